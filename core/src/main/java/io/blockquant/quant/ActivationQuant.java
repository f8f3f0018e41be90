package io.blockquant.quant;

import java.io.Serializable;

/**
 * Everything a quantized block does to its activations at inference: the per-token quantizer of every block
 * linear's input (null: none) and attention's own ({@link AttentionQuant}). Built from the recipe keys by
 * {@link #of}, the one place that turns {@code abits}, {@code aformat}, {@code asym-acts}, {@code quant-attn},
 * {@code kv-bits} and {@code kv-format} into quantizers.
 */
public record ActivationQuant(TokenQuant linearInputs, AttentionQuant attention) implements Serializable {

    public static final ActivationQuant NONE = new ActivationQuant(null, AttentionQuant.NONE);

    /**
     * The reference's rule for a weight-activation setting: below 8 activation bits (W4A4, W6A6) asymmetric
     * per-token activations and quantized Q, K, V (OmniQuant's {@code symmetric: False} and QuantMatMul); at 8 bits
     * the symmetric linear-input rule of W8A8 (SmoothQuant, ZeroQuant-FP, the reference figures' protocol).
     */
    public static boolean referenceRule(int abits) {
        return abits < 8;
    }

    /**
     * @param abits      linear-input bits, 16 = none
     * @param aformat    FP8 linear inputs (with abits 8), else null
     * @param asymmetric INT activations with a zero point (linear inputs, Q/K/V, an INT KV cache follows it too)
     * @param quantAttn  quantize Q, K, V per head and token at {@code abits} (needs abits &lt; 16)
     * @param kvBits     0, or the KV cache's bits: K (after RoPE) and V per head and token, whatever abits says
     * @param kvFormat   FP8 KV cache (with kvBits 8), else null (INT, asymmetric)
     */
    public static ActivationQuant of(int abits, FpFormat aformat, boolean asymmetric, boolean quantAttn, int kvBits,
                                     FpFormat kvFormat) {
        TokenQuant a = abits >= 16 ? null : aformat != null ? TokenQuant.fp8(aformat) : TokenQuant.integer(abits, asymmetric);
        TokenQuant qkv = quantAttn ? a : null;
        TokenQuant kv = kvBits <= 0 ? qkv : kvFormat != null ? TokenQuant.fp8(kvFormat) : TokenQuant.integer(kvBits, true);
        return new ActivationQuant(a, new AttentionQuant(qkv, kv, kv));
    }

    public boolean isNone() {
        return linearInputs == null && attention.isNone();
    }
}
