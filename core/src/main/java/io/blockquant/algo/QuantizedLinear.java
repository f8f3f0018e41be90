package io.blockquant.algo;

import io.blockquant.quant.IntQuantSpec;

/**
 * A linear layer's quantized weight in the form it is stored and exported: integer levels in the
 * original column order, one scale and zero point per (row, group), and each column's group
 * ({@code gIdx}, not monotone under act-order). {@code W[r, c] = scales[r, gIdx[c]] · (levels[r, c] −
 * zeros[r, gIdx[c]])}.
 *
 * @param loss GPTQ's accumulated loss {@code Σ (w − q)² / (2·[H⁻¹]_cc²)} (0 for RTN)
 */
public record QuantizedLinear(int rows, int cols, IntQuantSpec spec, int groups, int[] levels, float[] scales,
                              float[] zeros, int[] gIdx, double loss)
        implements StoredWeight {

    /** The dequantized weight, row-major {@code [rows, cols]}. */
    public float[] dequantize() {
        float[] w = new float[rows * cols];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                int g = r * groups + gIdx[c];
                w[r * cols + c] = scales[g] * (levels[r * cols + c] - zeros[g]);
            }
        }
        return w;
    }
}
