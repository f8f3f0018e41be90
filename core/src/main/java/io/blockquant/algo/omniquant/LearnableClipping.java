package io.blockquant.algo.omniquant;

import io.blockquant.algo.QuantizedLinear;
import io.blockquant.quant.ClippedQuantizer;
import io.blockquant.quant.IntQuantSpec;

/**
 * Learnable Weight Clipping (OmniQuant eq. 2–3) for one weight {@code [rows, cols]}, per output row or per
 * group of columns: {@code h = σ(γ)·max(W)}, {@code l = σ(β)·min(W)}, {@code scale = (h − l)/(2^N − 1)},
 * {@code zero = round(−l/scale)}, {@code Ŵ = scale·(clamp(round(W/scale) + zero, 0, 2^N − 1) − zero)}.
 * As the reference ({@code quantize/quantizer.py}, {@code per_token_dynamic_calibration} and
 * {@code fake_quant}): min and max are the group's own (not widened to include zero), the scale is clamped
 * to [1e-5, 1e4], the zero point is rounded without a gradient, and {@code round(W/scale)} is the
 * straight-through estimator. Holds the learnable vectors and gives the stored form.
 */
public final class LearnableClipping {

    /** γ = β = 4 at the start: σ(4) ≈ 0.982, almost the min-max range. */
    public static final float INIT = 4f;

    final int rows, cols, group, groups, maxq;
    final IntQuantSpec spec;
    /** γ (upper bound factor) and β (lower bound factor), one per (row, group). */
    public final float[] gamma, beta;

    public LearnableClipping(int rows, int cols, IntQuantSpec spec) {
        if (spec.symmetric()) throw new IllegalArgumentException("learnable clipping is asymmetric (min-max); got " + spec);
        this.rows = rows;
        this.cols = cols;
        this.spec = spec;
        this.group = spec.perChannel() ? cols : spec.groupSize();
        if (cols % group != 0) throw new IllegalArgumentException("group size " + group + " does not divide " + cols + " columns");
        this.groups = cols / group;
        this.maxq = spec.maxLevel();
        this.gamma = new float[rows * groups];
        this.beta = new float[rows * groups];
        java.util.Arrays.fill(gamma, INIT);
        java.util.Arrays.fill(beta, INIT);
    }

    /** The forward's result: Ŵ and its stored form (levels, scale and zero per group). */
    public static final class Quantized {
        public final float[] weight;      // Ŵ
        final float[] scale, zero;
        final int[] levels;

        Quantized(int n, int g) {
            weight = new float[n];
            levels = new int[n];
            scale = new float[g];
            zero = new float[g];
        }
    }

    /** Eq. 2–3 on the heap ({@link ClippedQuantizer}); the training step runs the backend's op of the same math. */
    public Quantized quantize(float[] w) {
        Quantized q = new Quantized(rows * cols, rows * groups);
        ClippedQuantizer.forward(w, rows, cols, group, spec.bits(), gamma, beta, q.weight, q.levels, q.scale, q.zero);
        return q;
    }

    /** The stored form of {@link #quantize}'s result; its {@code dequantize()} equals {@code q.weight} exactly. */
    public QuantizedLinear export(Quantized q) {
        int[] gIdx = new int[cols];
        for (int c = 0; c < cols; c++) gIdx[c] = c / group;
        return new QuantizedLinear(rows, cols, spec, groups, q.levels.clone(), q.scale.clone(), q.zero.clone(), gIdx, 0);
    }
}
