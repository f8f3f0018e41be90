package io.blockquant.algo.omniquant;

import io.blockquant.algo.QuantizedLinear;
import io.blockquant.quant.IntQuantSpec;

/**
 * Learnable Weight Clipping (OmniQuant eq. 2–3) for one weight {@code [rows, cols]}, per output row or per
 * group of columns: {@code h = σ(γ)·max(W)}, {@code l = σ(β)·min(W)}, {@code scale = (h − l)/(2^N − 1)},
 * {@code zero = round(−l/scale)}, {@code Ŵ = scale·(clamp(round(W/scale) + zero, 0, 2^N − 1) − zero)}.
 * As the reference ({@code quantize/quantizer.py}, {@code per_token_dynamic_calibration} and
 * {@code fake_quant}): min and max are the group's own (not widened to include zero), the scale is clamped
 * to [1e-5, 1e4], the zero point is rounded without a gradient, and {@code round(W/scale)} is the
 * straight-through estimator. Pure math on heap arrays.
 */
public final class LearnableClipping {

    static final float CLIP_MIN = 1e-5f, CLIP_MAX = 1e4f;
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

    static float sigmoid(float v) {
        return (float) (1.0 / (1.0 + Math.exp(-v)));
    }

    /** The forward's per-group state, what the backward and the export read. */
    public static final class Quantized {
        public final float[] weight;      // Ŵ
        final float[] max, min, scale, zero;
        /** Where the group's max/min sits when it is unique, else −1 (ties: the gradient is split among them). */
        final int[] maxAt, minAt;
        final boolean[] scaleClamped;
        final int[] levels;

        Quantized(int n, int g) {
            weight = new float[n];
            levels = new int[n];
            max = new float[g];
            min = new float[g];
            scale = new float[g];
            zero = new float[g];
            maxAt = new int[g];
            minAt = new int[g];
            scaleClamped = new boolean[g];
        }
    }

    /** Rows per parallel task: a training step quantizes every weight of the block, on the step's critical path. */
    private static final int ROWS_PER_TASK = 32;

    /** {@code body(from, to)} over row ranges, in parallel; each row's work touches only that row's slots. */
    private void forRows(java.util.function.BiConsumer<Integer, Integer> body) {
        int tasks = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        java.util.stream.IntStream.range(0, tasks).parallel()
                .forEach(t -> body.accept(t * ROWS_PER_TASK, Math.min(rows, (t + 1) * ROWS_PER_TASK)));
    }

    public Quantized quantize(float[] w) {
        Quantized q = new Quantized(rows * cols, rows * groups);
        forRows((r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                for (int g = 0; g < groups; g++) quantizeGroup(w, q, r * groups + g, r * cols + g * group);
            }
        });
        return q;
    }

    private void quantizeGroup(float[] w, Quantized q, int k, int from) {
        float mx = Float.NEGATIVE_INFINITY, mn = Float.POSITIVE_INFINITY;
        int mxAt = -1, mnAt = -1, mxTies = 0, mnTies = 0;
        for (int i = from; i < from + group; i++) {
            float v = w[i];
            if (v > mx) { mx = v; mxAt = i; mxTies = 1; } else if (v == mx) mxTies++;
            if (v < mn) { mn = v; mnAt = i; mnTies = 1; } else if (v == mn) mnTies++;
        }
        float h = sigmoid(gamma[k]) * mx, l = sigmoid(beta[k]) * mn;     // eq. 3
        float raw = (h - l) / maxq;                                      // eq. 2
        float scale = Math.max(CLIP_MIN, Math.min(CLIP_MAX, raw));
        float zero = (float) Math.rint(Math.max(-1e4f, Math.min(1e4f, -l / scale)));
        q.max[k] = mx;
        q.min[k] = mn;
        q.maxAt[k] = mxTies == 1 ? mxAt : -1;
        q.minAt[k] = mnTies == 1 ? mnAt : -1;
        q.scale[k] = scale;
        q.zero[k] = zero;
        q.scaleClamped[k] = raw != scale;
        for (int i = from; i < from + group; i++) {
            float level = Math.max(0f, Math.min(maxq, (float) Math.rint(w[i] / scale) + zero));
            q.levels[i] = (int) level;
            q.weight[i] = scale * ((int) level - zero);   // the same arithmetic as QuantizedLinear.dequantize
        }
    }

    /**
     * Backward of {@link #quantize}: adds {@code dL/dγ}, {@code dL/dβ} into the given arrays and returns
     * {@code dL/dW} (through round's STE inside the clamp range, and through max/min into the extreme
     * elements, split evenly between ties as torch's amax/amin do).
     */
    public float[] backward(float[] w, Quantized q, float[] dOut, float[] dGamma, float[] dBeta) {
        float[] dw = new float[w.length];
        forRows((r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                for (int g = 0; g < groups; g++) backwardGroup(w, q, dOut, dGamma, dBeta, dw, r * groups + g, r * cols + g * group);
            }
        });
        return dw;
    }

    private void backwardGroup(float[] w, Quantized q, float[] dOut, float[] dGamma, float[] dBeta, float[] dw, int k, int from) {
        float scale = q.scale[k], zero = q.zero[k];
        double dScale = 0;
        for (int i = from; i < from + group; i++) {
            float t = w[i] / scale;
            float pre = (float) Math.rint(t) + zero;
            if (pre >= 0 && pre <= maxq) {
                // Ŵ = scale·round_ste(W/scale): ∂/∂W = 1, ∂/∂scale = round(W/scale) − W/scale
                dw[i] = dOut[i];
                dScale += (double) dOut[i] * ((float) Math.rint(t) - t);
            } else {
                // clamped: Ŵ = scale·(c − zero), c ∈ {0, 2^N − 1}
                dScale += (double) dOut[i] * (q.levels[i] - zero);
            }
        }
        if (q.scaleClamped[k]) return;
        double dh = dScale / maxq, dl = -dScale / maxq;
        float sg = sigmoid(gamma[k]), sb = sigmoid(beta[k]);
        dGamma[k] += (float) (dh * q.max[k] * sg * (1 - sg));
        dBeta[k] += (float) (dl * q.min[k] * sb * (1 - sb));
        spread(w, dw, from, group, q.max[k], q.maxAt[k], dh * sg);
        spread(w, dw, from, group, q.min[k], q.minAt[k], dl * sb);
    }

    /** ∂/∂max (or min) into the extreme element, or split evenly between ties as torch's amax/amin do. */
    private static void spread(float[] w, float[] dw, int from, int group, float extreme, int at, double grad) {
        if (at >= 0) {
            dw[at] += (float) grad;
            return;
        }
        int ties = 0;
        for (int i = from; i < from + group; i++) if (w[i] == extreme) ties++;
        for (int i = from; i < from + group; i++) if (w[i] == extreme) dw[i] += (float) (grad / ties);
    }

    /** The stored form of {@link #quantize}'s result; its {@code dequantize()} equals {@code q.weight} exactly. */
    public QuantizedLinear export(Quantized q) {
        int[] gIdx = new int[cols];
        for (int c = 0; c < cols; c++) gIdx[c] = c / group;
        return new QuantizedLinear(rows, cols, spec, groups, q.levels.clone(), q.scale.clone(), q.zero.clone(), gIdx, 0);
    }
}
