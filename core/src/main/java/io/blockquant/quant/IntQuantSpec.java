package io.blockquant.quant;

import java.io.Serializable;

/**
 * How an integer weight quantizer groups and rounds: {@code bits} wide, per output row
 * ({@code groupSize <= 0}) or per group of {@code groupSize} input columns, asymmetric min-max (the range
 * widened to include zero) or symmetric.
 */
public record IntQuantSpec(int bits, int groupSize, boolean symmetric) implements Serializable {

    public IntQuantSpec {
        if (bits < 2 || bits > 8) {
            throw new IllegalArgumentException("weight bits must be 2..8, got " + bits);
        }
    }

    public boolean perChannel() {
        return groupSize <= 0;
    }

    public int maxLevel() {
        return (1 << bits) - 1;
    }

    @Override
    public String toString() {
        return "W" + bits + (perChannel() ? " per-channel" : " g" + groupSize) + (symmetric ? " sym" : " asym");
    }
}
