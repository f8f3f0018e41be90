package io.blockquant.quant;

import java.io.Serializable;

/**
 * One dynamic per-token fake quantizer of activations: each row of the last dimension gets its own scale at
 * run time. INT symmetric ({@code scale = absmax/(2^(b−1) − 1)}, the W8A8 rule of SmoothQuant and ZeroQuant),
 * INT asymmetric (min-max with a zero point, the OmniQuant reference's {@code symmetric: False}), or FP8
 * ({@code scale = absmax/format max}, ZeroQuant-FP); a backend applies it ({@code FakeQuantOps#fakeQuantizeTokens}). Applied to a split-head tensor {@code [b·h, seq, d]} a
 * row is one head of one token: the per-head, per-token scales of quantized attention and a KV cache.
 *
 * @param bits       2..8 (8 for an FP8 format)
 * @param asymmetric INT with a zero point; false: symmetric INT, or FP when {@code format} is set
 * @param format     FP8 format, else null (INT)
 */
public record TokenQuant(int bits, boolean asymmetric, FpFormat format) implements Serializable {

    public TokenQuant {
        if (bits < 2 || bits > 8) throw new IllegalArgumentException("per-token activation bits must be 2..8, got " + bits);
        if (format != null && (asymmetric || bits != 8)) throw new IllegalArgumentException("FP8 per-token quantization is symmetric, 8 bits");
    }

    public static TokenQuant integer(int bits, boolean asymmetric) {
        return new TokenQuant(bits, asymmetric, null);
    }

    public static TokenQuant fp8(FpFormat format) {
        return new TokenQuant(8, false, format);
    }

    /** {@code int8}, {@code int4-asym}, {@code fp8-E4M3}. */
    public String label() {
        return format != null ? "fp8-" + format : "int" + bits + (asymmetric ? "-asym" : "");
    }
}
