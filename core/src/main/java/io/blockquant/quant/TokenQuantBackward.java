package io.blockquant.quant;

/**
 * The backward of the dynamic per-token (per-row) fake quantizers ({@link IntQuantizer#fakeQuantizeTokens},
 * {@link IntQuantizer#fakeQuantizeTokensAsym}, {@link FpQuantizer#fakeQuantizeTokens}) as the OmniQuant reference's
 * autograd takes it ({@code quantize/quantizer.py}: {@code round_ste}, then {@code clamp}, and a scale computed from
 * the row's {@code amin}/{@code amax} without a detach): with {@code y = s·(clamp(round_ste(x/s) + z) − z)},
 * <ul>
 *   <li>an element inside the clamp range passes its gradient straight through ({@code ∂y/∂x = 1}) and adds
 *       {@code dy·(round(x/s) − x/s)} to the scale's gradient; an element the clamp cuts passes nothing and adds
 *       {@code dy·(level − z)};</li>
 *   <li>the scale's gradient goes to the row's extremes: {@code s = (max − min)/(2^b − 1)} (asymmetric; none while
 *       the scale sits at its [1e-5, 1e4] clamp), {@code s = absmax/q} (symmetric INT, q = 2^(b−1) − 1; FP, q the
 *       format's max) into the elements that reach |x| = absmax, with their sign; ties share it evenly, as torch's
 *       amax/amin do;</li>
 *   <li>the zero point is rounded and gets no gradient.</li>
 * </ul>
 * The scale term is what lets LET see activation ranges: straight-through alone hands the unquantized tensor the
 * same gradient whatever its outliers cost in rounding. Pure heap math (the CPU backend's op); the CUDA kernel
 * mirrors it.
 */
public final class TokenQuantBackward {

    private TokenQuantBackward() {}

    /** {@code dx} for {@code x [rows, cols]} through {@code q}, from the gradient {@code dy} at its output (all float32). */
    public static void backward(float[] x, float[] dy, int rows, int cols, TokenQuant q, float[] dx) {
        java.util.stream.IntStream.range(0, rows).parallel().forEach(r -> {
            int off = r * cols;
            if (q.format() != null) {
                float max = q.format().maxValue();
                absMaxRow(x, dy, off, cols, max, -max, max, t -> FpQuantizer.fakeQuantize((float) t, 1f, q.format()), dx);
            } else if (q.asymmetric()) {
                asymmetricRow(x, dy, off, cols, (1 << q.bits()) - 1, dx);
            } else {
                int qmax = (1 << (q.bits() - 1)) - 1;
                absMaxRow(x, dy, off, cols, qmax, -qmax - 1, qmax, Math::rint, dx);
            }
        });
    }

    /** The reference's asymmetric row ({@link IntQuantizer#fakeQuantizeTokensAsym}'s grid): s = (max − min)/qmax. */
    private static void asymmetricRow(float[] x, float[] dy, int off, int cols, int qmax, float[] dx) {
        IntQuantizer.AsymRow g = IntQuantizer.asymRow(x, off, cols, qmax);
        double dScale = QuantizerGradient.straightThrough(x, dy, off, cols, g.scale(), g.zero(), 0, qmax, Math::rint, dx);
        if (g.raw() != g.scale()) return; // the scale sits at its clamp: no gradient
        QuantizerGradient.toExtreme(x, off, cols, g.max(), false, dScale / qmax, dx);
        QuantizerGradient.toExtreme(x, off, cols, g.min(), false, -dScale / qmax, dx);
    }

    /**
     * A row quantized as {@code s·clamp(round(x/s), lo, hi)} with {@code s = absmax/q} (symmetric INT; FP, whose
     * rounding saturates at ±max): an all-zero row is left as it is (the identity).
     */
    private static void absMaxRow(float[] x, float[] dy, int off, int cols, float q, float lo, float hi,
                                  java.util.function.DoubleUnaryOperator round, float[] dx) {
        float absMax = FpQuantizer.absMax(x, off, off + cols);
        if (absMax == 0f) {
            System.arraycopy(dy, off, dx, off, cols);
            return;
        }
        double dScale = QuantizerGradient.straightThrough(x, dy, off, cols, absMax / q, 0f, lo, hi, round, dx);
        QuantizerGradient.toExtreme(x, off, cols, absMax, true, dScale / q, dx);
    }
}
