package io.blockquant.quant;

/**
 * Floating-point fake quantization on plain arrays (ZeroQuant-FP, section 3): the reference semantics every
 * backend must reproduce. A value x with scale s becomes {@code decode(encode(x / s)) · s} — x/s rounded to
 * the nearest value of the format, ties to even, saturating at ±max ({@link FpFormat#encode}). Scales are
 * symmetric absmax scales, {@code s = absmax / max}, so the largest magnitude lands on the format's max.
 *
 * <p>(DeepSpeed's {@code csrc/fp_quantizer/quantize.cu} multiplies by {@code max / absmax} and rounds the
 * mantissa half away from zero; here x is divided by s, like {@link IntQuantizer}, and ties go to even,
 * like PyTorch's float8 casts.)
 */
public final class FpQuantizer {

    private FpQuantizer() {}

    /** Quantize then dequantize one value. */
    public static float fakeQuantize(float x, float scale, FpFormat format) {
        return format.decode(format.encode(x / scale)) * scale;
    }

    /** The code of one value under a scale. */
    public static int encode(float x, float scale, FpFormat format) {
        return format.encode(x / scale);
    }

    /** {@code max |x[i]|} over {@code [from, to)}. */
    public static float absMax(float[] x, int from, int to) {
        float m = 0f;
        for (int i = from; i < to; i++) m = Math.max(m, Math.abs(x[i]));
        return m;
    }

    /**
     * The scale of every (row, group) of a row-major weight {@code [rows, cols]}, row-major
     * {@code [rows, cols / group]}, under the spec's {@link ScaleConstraint}.
     */
    public static float[] weightScales(float[] w, int rows, int cols, FpQuantSpec spec) {
        int group = spec.groupFor(cols), groups = cols / group;
        float[] scales = new float[rows * groups];
        for (int r = 0; r < rows; r++) {
            float rowMax = absMax(w, r * cols, (r + 1) * cols);
            for (int g = 0; g < groups; g++) {
                int from = r * cols + g * group;
                scales[r * groups + g] = spec.constraint().scale(absMax(w, from, from + group), rowMax, spec.format());
            }
        }
        return scales;
    }

    /**
     * Round-to-nearest FP quantization of a weight {@code [rows, cols]}: fills {@code codes} (one code per
     * element, unpacked) and returns the scales {@code [rows, groups]}.
     */
    public static float[] encodeWeight(float[] w, int rows, int cols, FpQuantSpec spec, byte[] codes) {
        if (codes.length != w.length) throw new IllegalArgumentException(codes.length + " codes for " + w.length + " weights");
        float[] scales = weightScales(w, rows, cols, spec);
        int group = spec.groupFor(cols), groups = cols / group;
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                codes[r * cols + c] = (byte) encode(w[r * cols + c], scales[r * groups + c / group], spec.format());
            }
        }
        return scales;
    }

    /** {@code W[r, c] = decode(codes[r, c]) · scales[r, c / group]}. */
    public static float[] dequantize(byte[] codes, float[] scales, int rows, int cols, FpQuantSpec spec) {
        int group = spec.groupFor(cols), groups = cols / group;
        float[] w = new float[rows * cols];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                w[r * cols + c] = spec.format().decode(codes[r * cols + c] & 0xff) * scales[r * groups + c / group];
            }
        }
        return w;
    }

    /** Fake-quantizes a row-major weight {@code [rows, cols]} in place, per row or per column group. */
    public static void fakeQuantizeWeight(float[] w, int rows, int cols, FpQuantSpec spec) {
        float[] scales = weightScales(w, rows, cols, spec);
        int group = spec.groupFor(cols), groups = cols / group;
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                int i = r * cols + c;
                w[i] = fakeQuantize(w[i], scales[r * groups + c / group], spec.format());
            }
        }
    }

    /**
     * Dynamic per-token FP fake quantization of activations {@code [rows, cols]} in place (ZeroQuant-FP's FP8
     * activations): each row's scale is {@code absmax / max}; an all-zero row stays as it is.
     */
    public static void fakeQuantizeTokens(float[] x, int rows, int cols, FpFormat format) {
        for (int r = 0; r < rows; r++) {
            int off = r * cols;
            float absMax = absMax(x, off, off + cols);
            if (absMax == 0f) continue;
            float scale = absMax / format.maxValue();
            for (int i = off; i < off + cols; i++) x[i] = fakeQuantize(x[i], scale, format);
        }
    }
}
