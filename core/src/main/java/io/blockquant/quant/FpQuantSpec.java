package io.blockquant.quant;

import java.io.Serializable;

/**
 * How an FP weight quantizer groups and scales (ZeroQuant-FP): the format, per output row ({@code groupSize
 * <= 0}) or per group of {@code groupSize} input columns, symmetric absmax scales ({@code absmax / max}) under
 * a {@link ScaleConstraint}.
 */
public record FpQuantSpec(FpFormat format, int groupSize, ScaleConstraint constraint) implements Serializable {

    public FpQuantSpec {
        if (format == null) throw new IllegalArgumentException("FP weight format is null");
        if (constraint == null) throw new IllegalArgumentException("scale constraint is null (use NONE)");
    }

    public boolean perChannel() {
        return groupSize <= 0;
    }

    /** The columns per group for a weight {@code cols} wide; checks that it divides the width. */
    public int groupFor(int cols) {
        int group = perChannel() ? cols : groupSize;
        if (cols % group != 0) {
            throw new IllegalArgumentException("group size " + group + " does not divide the input width " + cols);
        }
        return group;
    }

    @Override
    public String toString() {
        return format + (perChannel() ? " per-channel" : " g" + groupSize)
                + (constraint == ScaleConstraint.NONE ? "" : " " + constraint);
    }
}
