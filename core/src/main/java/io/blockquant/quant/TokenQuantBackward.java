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
            if (q.format() != null) absMaxRow(x, dy, off, cols, q.format().maxValue(), v -> FpQuantizer.fakeQuantize((float) v, 1f, q.format()), dx);
            else if (q.asymmetric()) asymmetricRow(x, dy, off, cols, q.bits(), dx);
            else {
                int qmax = (1 << (q.bits() - 1)) - 1, qmin = -(1 << (q.bits() - 1));
                absMaxRow(x, dy, off, cols, qmax, t -> Math.max(qmin, Math.min(qmax, (float) Math.rint(t))), dx);
            }
        });
    }

    /** The reference's asymmetric row (eq. of {@link IntQuantizer#fakeQuantizeTokensAsym}). */
    private static void asymmetricRow(float[] x, float[] dy, int off, int cols, int bits, float[] dx) {
        int qmax = (1 << bits) - 1;
        float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
        for (int i = off; i < off + cols; i++) {
            min = Math.min(min, x[i]);
            max = Math.max(max, x[i]);
        }
        float raw = (max - min) / qmax;
        float scale = Math.max(IntQuantizer.SCALE_MIN, Math.min(IntQuantizer.SCALE_MAX, raw));
        float zero = (float) Math.rint(Math.max(-IntQuantizer.ZERO_BOUND, Math.min(IntQuantizer.ZERO_BOUND, -min / scale)));
        double dScale = 0;
        for (int i = off; i < off + cols; i++) {
            float t = x[i] / scale, rounded = (float) Math.rint(t), pre = rounded + zero;
            if (pre >= 0 && pre <= qmax) {
                dx[i] = dy[i];
                dScale += (double) dy[i] * (rounded - t);
            } else {
                dx[i] = 0f;
                dScale += (double) dy[i] * ((pre < 0 ? 0 : qmax) - zero);
            }
        }
        if (raw != scale) return;
        // s = (max − min)/qmax
        int maxTies = 0, minTies = 0;
        for (int i = off; i < off + cols; i++) {
            if (x[i] == max) maxTies++;
            if (x[i] == min) minTies++;
        }
        float toMax = (float) (dScale / qmax / maxTies), toMin = (float) (-dScale / qmax / minTies);
        for (int i = off; i < off + cols; i++) {
            if (x[i] == max) dx[i] += toMax;
            if (x[i] == min) dx[i] += toMin;
        }
    }

    /**
     * A row quantized as {@code s·level(x/s)} with {@code s = absmax/q} (symmetric INT; FP): no element leaves the
     * range, so every one passes its gradient and adds {@code dy·(level(t) − t)} to the scale's; an all-zero row is
     * left as it is (the identity).
     */
    private static void absMaxRow(float[] x, float[] dy, int off, int cols, float q, java.util.function.DoubleUnaryOperator level,
                                  float[] dx) {
        float absMax = 0f;
        for (int i = off; i < off + cols; i++) absMax = Math.max(absMax, Math.abs(x[i]));
        System.arraycopy(dy, off, dx, off, cols);
        if (absMax == 0f) return;
        float scale = absMax / q;
        double dScale = 0;
        for (int i = off; i < off + cols; i++) {
            float t = x[i] / scale;
            dScale += (double) dy[i] * ((float) level.applyAsDouble(t) - t);
        }
        int ties = 0;
        for (int i = off; i < off + cols; i++) if (Math.abs(x[i]) == absMax) ties++;
        float toMax = (float) (dScale / q / ties);
        for (int i = off; i < off + cols; i++) if (Math.abs(x[i]) == absMax) dx[i] += Math.signum(x[i]) * toMax;
    }
}
