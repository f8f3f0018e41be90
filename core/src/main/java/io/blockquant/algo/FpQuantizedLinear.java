package io.blockquant.algo;

import io.blockquant.quant.FpQuantSpec;

/**
 * A linear layer's FP-quantized weight (ZeroQuant-FP): one code of {@code spec.format()} per element,
 * unpacked (one per byte, original column order; pack with {@link io.blockquant.quant.FpFormat#pack}), one
 * scale per (row, group), and each column's group ({@code gIdx}, not monotone under act-order).
 * {@code W[r, c] = decode(codes[r, c]) · scales[r, gIdx[c]]}. Under {@link io.blockquant.quant.ScaleConstraint#M1}
 * every scale is a power of two; under {@code M2} the scales of a row are its channel scale times powers of
 * two ({@link io.blockquant.quant.FpCast#powerOfTwoShift}).
 *
 * @param loss GPTQ's accumulated loss {@code Σ (w − q)² / (2·[H⁻¹]_cc²)} (0 for RTN)
 */
public record FpQuantizedLinear(int rows, int cols, FpQuantSpec spec, int groups, byte[] codes, float[] scales,
                                int[] gIdx, double loss) implements StoredWeight {

    /** The dequantized weight, row-major {@code [rows, cols]}. */
    public float[] dequantize() {
        float[] w = new float[rows * cols];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                w[r * cols + c] = spec.format().decode(codes[r * cols + c] & 0xff) * scales[r * groups + gIdx[c]];
            }
        }
        return w;
    }
}
