package io.blockquant.tensor;

import io.blockquant.quant.FpFormat;
import io.blockquant.quant.IntQuantSpec;

/**
 * Fake quantization (quantize, then dequantize, in float32) of weights and activations: how a quantized
 * model's forward and OmniQuant's training see the rounding, with the quantizers' exact semantics.
 */
public interface FakeQuantOps {

    /** Round-to-nearest fake quantization of a weight {@code [out, in]}: quantize, then dequantize. */
    Tensor fakeQuantizeWeight(Tensor w, IntQuantSpec spec);

    /** Dynamic symmetric per-token (per-row) fake quantization of activations, scale = absmax/(2^(b−1)−1). */
    Tensor fakeQuantizeTokens(Tensor x, int bits);

    /** Dynamic per-token FP fake quantization of activations (ZeroQuant-FP): scale = row absmax / format max. */
    Tensor fakeQuantizeTokensFp(Tensor x, FpFormat format);
}
