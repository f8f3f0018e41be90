package io.blockquant.quant;

/**
 * The learnable clipped quantizer of OmniQuant's LWC (Shao et al., 2023, eq. 2–3) on a weight {@code [rows, cols]}
 * in groups of {@code group} columns, one (γ, β) per (row, group): {@code h = σ(γ)·max(W)}, {@code l = σ(β)·min(W)}
 * (eq. 3), {@code scale = (h − l)/(2^N − 1)}, {@code zero = round(−l/scale)},
 * {@code Ŵ = scale·(clamp(round(W/scale) + zero, 0, 2^N − 1) − zero)} (eq. 2). As the reference
 * ({@code quantize/quantizer.py}): min and max are the group's own (not widened to include zero), the scale is
 * clamped to [1e-5, 1e4], the zero point is rounded without a gradient, {@code round(W/scale)} is the
 * straight-through estimator. Pure heap math: the CPU backend's op and the exported form share it, the CUDA
 * kernel mirrors it.
 */
public final class ClippedQuantizer {

    private ClippedQuantizer() {}

    public static final float SCALE_MIN = 1e-5f, SCALE_MAX = 1e4f;

    public static float sigmoid(float v) {
        return (float) (1.0 / (1.0 + Math.exp(-v)));
    }

    /** One group's range and grid (eq. 2–3). */
    private record Grid(float max, float min, float scale, float zero, boolean scaleClamped) {}

    private static Grid grid(float[] w, int from, int group, float gamma, float beta, int maxq) {
        float mx = Float.NEGATIVE_INFINITY, mn = Float.POSITIVE_INFINITY;
        for (int i = from; i < from + group; i++) {
            if (w[i] > mx) mx = w[i];
            if (w[i] < mn) mn = w[i];
        }
        float h = sigmoid(gamma) * mx, l = sigmoid(beta) * mn;          // eq. 3
        float raw = (h - l) / maxq;                                       // eq. 2
        float scale = Math.max(SCALE_MIN, Math.min(SCALE_MAX, raw));
        float zero = (float) Math.rint(Math.max(-1e4f, Math.min(1e4f, -l / scale)));
        return new Grid(mx, mn, scale, zero, raw != scale);
    }

    /** Rows per parallel task: a training step quantizes every weight of the block, on the step's critical path. */
    private static final int ROWS_PER_TASK = 32;

    private static void forRows(int rows, java.util.function.IntConsumer row) {
        int tasks = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        java.util.stream.IntStream.range(0, tasks).parallel().forEach(t -> {
            for (int r = t * ROWS_PER_TASK; r < Math.min(rows, (t + 1) * ROWS_PER_TASK); r++) row.accept(r);
        });
    }

    /** One (row, group) of the weight: {@code k} its index, {@code from} its first element, {@code q} its clipped grid. */
    private interface GroupWork {
        void run(int k, int from, Grid q);
    }

    /** {@code work} on every (row, group) of {@code w [rows, cols]}, rows in parallel, with the group's grid (eq. 2–3). */
    private static void eachGroup(float[] w, int rows, int cols, int group, int maxq, float[] gamma, float[] beta, GroupWork work) {
        int groups = cols / group;
        forRows(rows, r -> {
            for (int g = 0; g < groups; g++) {
                int k = r * groups + g, from = r * cols + g * group;
                work.run(k, from, grid(w, from, group, gamma[k], beta[k], maxq));
            }
        });
    }

    /** The shapes every backend's clipped quantizer takes: {@code w [rows, cols]}, γ and β one per (row, group). */
    public static void checkShapes(io.blockquant.tensor.Tensor w, io.blockquant.tensor.Tensor gamma, io.blockquant.tensor.Tensor beta,
                                   int group) {
        if (w.rank() != 2 || group <= 0 || w.size(1) % group != 0 || gamma.length() != w.size(0) * (w.size(1) / group)
                || beta.length() != gamma.length()) {
            throw new IllegalArgumentException("clipped quantizer: " + w.describe() + " in groups of " + group + " with γ "
                    + gamma.describe() + ", β " + beta.describe());
        }
    }

    /**
     * Eq. 2–3: {@code out} gets Ŵ; {@code levels}, {@code scales}, {@code zeros} (each may be null) the stored
     * form, levels per element and scale/zero per (row, group).
     */
    public static void forward(float[] w, int rows, int cols, int group, int bits, float[] gamma, float[] beta,
                               float[] out, int[] levels, float[] scales, float[] zeros) {
        int maxq = (1 << bits) - 1;
        eachGroup(w, rows, cols, group, maxq, gamma, beta, (k, from, q) -> {
            if (scales != null) scales[k] = q.scale();
            if (zeros != null) zeros[k] = q.zero();
            for (int i = from; i < from + group; i++) {
                int level = (int) Math.max(0f, Math.min(maxq, (float) Math.rint(w[i] / q.scale()) + q.zero()));
                if (levels != null) levels[i] = level;
                out[i] = q.scale() * (level - q.zero());   // the same arithmetic as QuantizedLinear.dequantize
            }
        });
    }

    /**
     * Backward of {@link #forward}: {@code dW} (through round's STE inside the clamp range, and through max/min into
     * the extreme elements, split evenly between ties as torch's amax/amin do), {@code dGamma}, {@code dBeta} per
     * (row, group); all three are overwritten.
     */
    public static void backward(float[] w, int rows, int cols, int group, int bits, float[] gamma, float[] beta,
                                float[] dOut, float[] dW, float[] dGamma, float[] dBeta) {
        int maxq = (1 << bits) - 1;
        eachGroup(w, rows, cols, group, maxq, gamma, beta, (k, from, q) -> {
            double dScale = QuantizerGradient.straightThrough(w, dOut, from, group, q.scale(), q.zero(), 0, maxq, Math::rint, dW);
            dGamma[k] = 0f;
            dBeta[k] = 0f;
            if (q.scaleClamped()) return;
            // scale = (h − l)/maxq, h = σ(γ)·max, l = σ(β)·min (eq. 2–3)
            double dh = dScale / maxq, dl = -dScale / maxq;
            float sg = sigmoid(gamma[k]), sb = sigmoid(beta[k]);
            dGamma[k] = (float) (dh * q.max() * sg * (1 - sg));
            dBeta[k] = (float) (dl * q.min() * sb * (1 - sb));
            QuantizerGradient.toExtreme(w, from, group, q.max(), false, dh * sg, dW);
            QuantizerGradient.toExtreme(w, from, group, q.min(), false, dl * sb, dW);
        });
    }
}
