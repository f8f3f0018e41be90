package io.blockquant.quant;

import java.io.Serializable;

/**
 * What {@code eval} applies to a model before scoring it: nothing ({@link #NONE}, full precision), or
 * round-to-nearest weights (per channel or per group) and optionally dynamic per-token INT activations
 * on the inputs of every linear layer inside the blocks.
 *
 * @param weights     null for full-precision weights
 * @param activationBits 0 for full-precision activations
 */
public record FakeQuantRecipe(IntQuantSpec weights, int activationBits, FpFormat activationFormat) implements Serializable {

    public static final FakeQuantRecipe NONE = new FakeQuantRecipe(null, 0);

    /** INT activations (or none). */
    public FakeQuantRecipe(IntQuantSpec weights, int activationBits) {
        this(weights, activationBits, null);
    }

    public FakeQuantRecipe {
        if (activationBits != 0 && (activationBits < 2 || activationBits > 16)) {
            throw new IllegalArgumentException("activation bits must be 2..16 (or 0 for none), got " + activationBits);
        }
    }

    public boolean isFullPrecision() {
        return weights == null && activationBits == 0 && activationFormat == null;
    }

    /** A short label such as {@code fp}, {@code rtn W4A16 g64} or {@code rtn W8A8 pc}. */
    public String label() {
        if (isFullPrecision()) return "fp";
        String w = weights == null ? "W16" : "W" + weights.bits();
        String a = activationFormat != null ? "A8-" + activationFormat : activationBits == 0 ? "A16" : "A" + activationBits;
        String g = weights == null ? "" : weights.perChannel() ? " pc" : " g" + weights.groupSize();
        String sym = weights != null && weights.symmetric() ? " sym" : "";
        return "rtn " + w + a + g + sym;
    }
}
