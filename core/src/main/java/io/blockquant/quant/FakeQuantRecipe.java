package io.blockquant.quant;

import java.io.Serializable;

/**
 * What {@code eval} applies to a model before scoring it: nothing ({@link #NONE}, full precision), or
 * round-to-nearest weights (per channel or per group) and the activation quantization of
 * {@link ActivationQuant}: dynamic per-token quantization of every block linear's input, and of attention's
 * queries, keys and values (or a KV cache's keys and values).
 *
 * @param weights     null for full-precision weights
 * @param activations {@link ActivationQuant#NONE} for full-precision activations
 */
public record FakeQuantRecipe(IntQuantSpec weights, ActivationQuant activations) implements Serializable {

    public static final FakeQuantRecipe NONE = new FakeQuantRecipe(null, ActivationQuant.NONE);

    /** Symmetric INT activations on the linears' inputs only (the W8A8 rule), or none (0 bits). */
    public FakeQuantRecipe(IntQuantSpec weights, int activationBits) {
        this(weights, activationBits, null);
    }

    /** FP8 linear inputs when {@code activationFormat} is set, else symmetric INT of {@code activationBits} (0: none). */
    public FakeQuantRecipe(IntQuantSpec weights, int activationBits, FpFormat activationFormat) {
        this(weights, linearOnly(activationBits, activationFormat));
    }

    private static ActivationQuant linearOnly(int bits, FpFormat format) {
        if (bits != 0 && (bits < 2 || bits > 16)) {
            throw new IllegalArgumentException("activation bits must be 2..16 (or 0 for none), got " + bits);
        }
        if (format == null && (bits == 0 || bits >= 16)) return ActivationQuant.NONE;
        return new ActivationQuant(format != null ? TokenQuant.fp8(format) : TokenQuant.integer(bits, false), AttentionQuant.NONE);
    }

    public FakeQuantRecipe {
        if (activations == null) throw new IllegalArgumentException("activations: use ActivationQuant.NONE for none");
    }

    /** The linear inputs' bits, 0 when they are not quantized. */
    public int activationBits() {
        return activations.linearInputs() == null ? 0 : activations.linearInputs().bits();
    }

    /** The linear inputs' FP8 format, null for INT or none. */
    public FpFormat activationFormat() {
        return activations.linearInputs() == null ? null : activations.linearInputs().format();
    }

    public boolean isFullPrecision() {
        return weights == null && activations.isNone();
    }

    /** The activations' part of {@link #label}: {@code A16}, {@code A8}, {@code A4 asym-acts qkv}, {@code A16 kv-int8}. */
    public String activationLabel() {
        return activationWidth() + activationRule();
    }

    /** A short label such as {@code fp}, {@code rtn W4A16 g64}, {@code rtn W8A8 pc} or {@code rtn W4A4 pc asym-acts qkv kv-int8}. */
    public String label() {
        if (isFullPrecision()) return "fp";
        String w = weights == null ? "W16" : "W" + weights.bits();
        String g = weights == null ? "" : weights.perChannel() ? " pc" : " g" + weights.groupSize();
        String sym = weights != null && weights.symmetric() ? " sym" : "";
        return "rtn " + w + activationWidth() + g + sym + activationRule();
    }

    /** {@code A16}, {@code A4}, {@code A8-E4M3}. */
    private String activationWidth() {
        TokenQuant in = activations.linearInputs();
        return activationFormat() != null ? "A8-" + activationFormat() : in == null ? "A16" : "A" + in.bits();
    }

    /** {@code " asym-acts"}, {@code " qkv"}, {@code " kv-int8"} as they apply. */
    private String activationRule() {
        TokenQuant in = activations.linearInputs();
        AttentionQuant att = activations.attention();
        String asym = in != null && in.asymmetric() ? " asym-acts" : "";
        String qkv = att.query() != null ? " qkv" : "";
        String kv = att.key() != null && !att.key().equals(att.query()) ? " kv-" + att.key().label() : "";
        return asym + qkv + kv;
    }
}
