package io.blockquant.quant;

/**
 * Integer round-to-nearest quantization on plain arrays: the reference semantics every backend must
 * reproduce. Asymmetric min-max as in GPTQ's {@code Quantizer.find_params} (range widened to include
 * zero, {@code scale = (max − min)/(2^b − 1)}, {@code zero = round(−min/scale)}); symmetric with
 * {@code zero = (2^b − 1 + 1)/2}. Rounding is half-to-even like {@code torch.round}.
 */
public final class IntQuantizer {

    private IntQuantizer() {}

    /** Scale and zero point of one quantization group. */
    public record Params(float scale, float zero) {}

    /** Parameters for the values {@code x[from, to)}. */
    public static Params params(float[] x, int from, int to, int bits, boolean symmetric) {
        float min = 0f, max = 0f; // widened to include zero
        for (int i = from; i < to; i++) {
            min = Math.min(min, x[i]);
            max = Math.max(max, x[i]);
        }
        return paramsForRange(min, max, bits, symmetric);
    }

    /** Parameters for a range that already includes zero. */
    public static Params paramsForRange(float min, float max, int bits, boolean symmetric) {
        int maxq = (1 << bits) - 1;
        if (symmetric) {
            float absMax = Math.max(Math.abs(min), max);
            min = -absMax;
            max = absMax;
        }
        if (min == 0f && max == 0f) { // an all-zero group: any scale reproduces it
            min = -1f;
            max = 1f;
        }
        float scale = (max - min) / maxq;
        float zero = symmetric ? (maxq + 1) / 2f : (float) Math.rint(-min / scale);
        return new Params(scale, zero);
    }

    /** The integer level of {@code x}: {@code clamp(round(x/scale) + zero, 0, 2^b − 1)}. */
    public static int level(float x, Params p, int maxq) {
        float q = (float) Math.rint(x / p.scale()) + p.zero();
        return (int) Math.max(0f, Math.min(maxq, q));
    }

    /** Quantize then dequantize one value. */
    public static float fakeQuantize(float x, Params p, int maxq) {
        return p.scale() * (level(x, p, maxq) - p.zero());
    }

    /** Fake-quantizes a row-major weight {@code [rows, cols]} in place, per row or per column group. */
    public static void fakeQuantizeWeight(float[] w, int rows, int cols, IntQuantSpec spec) {
        int group = spec.perChannel() ? cols : spec.groupSize();
        if (cols % group != 0) {
            throw new IllegalArgumentException("group size " + group + " does not divide the input width " + cols);
        }
        int maxq = spec.maxLevel();
        for (int r = 0; r < rows; r++) {
            for (int g = r * cols; g < (r + 1) * cols; g += group) {
                Params p = params(w, g, g + group, spec.bits(), spec.symmetric());
                for (int i = g; i < g + group; i++) w[i] = fakeQuantize(w[i], p, maxq);
            }
        }
    }

    /**
     * Dynamic symmetric per-token fake quantization of activations {@code [rows, cols]} in place:
     * {@code scale = absmax/(2^(b−1) − 1)}, levels clamped to {@code [−2^(b−1), 2^(b−1) − 1]}.
     */
    public static void fakeQuantizeTokens(float[] x, int rows, int cols, int bits) {
        int qmax = (1 << (bits - 1)) - 1;
        int qmin = -(1 << (bits - 1));
        for (int r = 0; r < rows; r++) {
            int off = r * cols;
            float absMax = 0f;
            for (int i = off; i < off + cols; i++) absMax = Math.max(absMax, Math.abs(x[i]));
            if (absMax == 0f) continue;
            float scale = absMax / qmax;
            for (int i = off; i < off + cols; i++) {
                float q = (float) Math.rint(x[i] / scale);
                x[i] = scale * Math.max(qmin, Math.min(qmax, q));
            }
        }
    }

    /** The reference's bounds on an activation scale and zero point ({@code quantize/quantizer.py}: CLIPMIN, 1e4). */
    static final float SCALE_MIN = 1e-5f, SCALE_MAX = 1e4f, ZERO_BOUND = 1e4f;

    /**
     * Dynamic asymmetric per-token fake quantization of activations {@code [rows, cols]} in place, as the
     * OmniQuant reference's {@code UniformAffineQuantizer} with {@code symmetric: False}: per row
     * {@code scale = clamp((max − min)/(2^b − 1), 1e-5, 1e4)} over the row's own min and max (not widened to
     * include zero), {@code zero = round(clamp(−min/scale, ±1e4))}, level {@code clamp(round(x/scale) + zero, 0,
     * 2^b − 1)}, value {@code (level − zero)·scale}. Rounding is half-to-even like {@code torch.round}.
     */
    public static void fakeQuantizeTokensAsym(float[] x, int rows, int cols, int bits) {
        int qmax = (1 << bits) - 1;
        for (int r = 0; r < rows; r++) {
            int off = r * cols;
            AsymRow g = asymRow(x, off, cols, qmax);
            for (int i = off; i < off + cols; i++) {
                float q = (float) Math.rint(x[i] / g.scale()) + g.zero();
                x[i] = (Math.max(0f, Math.min(qmax, q)) - g.zero()) * g.scale();
            }
        }
    }

    /** One row's asymmetric grid: its min and max, the scale before ({@code raw}) and after its clamp, the zero point. */
    record AsymRow(float min, float max, float raw, float scale, float zero) {}

    /** The grid of {@link #fakeQuantizeTokensAsym} for {@code x[off, off + cols)}, {@code qmax = 2^b − 1}. */
    static AsymRow asymRow(float[] x, int off, int cols, int qmax) {
        float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
        for (int i = off; i < off + cols; i++) {
            min = Math.min(min, x[i]);
            max = Math.max(max, x[i]);
        }
        float raw = (max - min) / qmax;
        float scale = Math.max(SCALE_MIN, Math.min(SCALE_MAX, raw));
        float zero = (float) Math.rint(Math.max(-ZERO_BOUND, Math.min(ZERO_BOUND, -min / scale)));
        return new AsymRow(min, max, raw, scale, zero);
    }
}
