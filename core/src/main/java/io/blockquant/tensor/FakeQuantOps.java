package io.blockquant.tensor;

import io.blockquant.quant.FpFormat;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.TokenQuant;

/**
 * Fake quantization (quantize, then dequantize, in float32) of weights and activations: how a quantized
 * model's forward and OmniQuant's training see the rounding, with the quantizers' exact semantics.
 */
public interface FakeQuantOps {

    /** Round-to-nearest fake quantization of a weight {@code [out, in]}: quantize, then dequantize. */
    Tensor fakeQuantizeWeight(Tensor w, IntQuantSpec spec);

    /**
     * LWC's learnable clipped fake quantizer (OmniQuant eq. 2–3, {@link io.blockquant.quant.ClippedQuantizer}) of a
     * weight {@code [out, in]} in groups of {@code group} columns, asymmetric with {@code bits} bits: the group's range
     * {@code [σ(β)·min, σ(γ)·max]}, γ and β {@code [out·in/group]} (row-major by row, then group).
     */
    Tensor fakeQuantizeClipped(Tensor w, Tensor gamma, Tensor beta, int group, int bits);

    /** Dynamic symmetric per-token (per-row) fake quantization of activations, scale = absmax/(2^(b−1)−1). */
    Tensor fakeQuantizeTokens(Tensor x, int bits);

    /**
     * Dynamic asymmetric per-token (per-row) fake quantization, the OmniQuant reference's activation rule:
     * min-max scale and zero point per row ({@code IntQuantizer#fakeQuantizeTokensAsym}).
     */
    Tensor fakeQuantizeTokensAsym(Tensor x, int bits);

    /** {@code x} through {@code q} (null: unchanged), rows of its last dimension. */
    default Tensor fakeQuantizeTokens(Tensor x, TokenQuant q) {
        if (q == null) return x;
        if (q.format() != null) return fakeQuantizeTokensFp(x, q.format());
        return q.asymmetric() ? fakeQuantizeTokensAsym(x, q.bits()) : fakeQuantizeTokens(x, q.bits());
    }

    /** Dynamic per-token FP fake quantization of activations (ZeroQuant-FP): scale = row absmax / format max. */
    Tensor fakeQuantizeTokensFp(Tensor x, FpFormat format);
}
