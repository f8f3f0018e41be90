package io.blockquant.quant;

import java.util.function.DoubleUnaryOperator;

/**
 * The two pieces every scaled rounding quantizer's backward shares, {@code y = s·(clamp(round(x/s) + z, lo, hi) − z)}
 * with {@code round} held by the straight-through estimator and the rounded zero point without a gradient, as the
 * OmniQuant reference's autograd takes it: LWC's clipped weights ({@link ClippedQuantizer}) and the per-token
 * activations ({@link TokenQuantBackward}).
 */
final class QuantizerGradient {

    private QuantizerGradient() {}

    /**
     * {@code dx} of elements {@code [from, from + n)}: {@code dy} where {@code round(x/s) + z} lies in {@code [lo, hi]},
     * 0 where the clamp cuts; returns the scale's gradient {@code Σ dy·∂y/∂s}, {@code round(x/s) − x/s} inside the
     * range and {@code level − z} where cut (summed in float64).
     */
    static double straightThrough(float[] x, float[] dy, int from, int n, float scale, float zero, float lo, float hi,
                                  DoubleUnaryOperator round, float[] dx) {
        double dScale = 0;
        for (int i = from; i < from + n; i++) {
            float t = x[i] / scale;
            float level = (float) round.applyAsDouble(t), pre = level + zero;
            if (pre >= lo && pre <= hi) {
                dx[i] = dy[i];
                dScale += (double) dy[i] * (level - t);
            } else {
                dx[i] = 0f;
                dScale += (double) dy[i] * ((pre < lo ? lo : hi) - zero);
            }
        }
        return dScale;
    }

    /**
     * Adds {@code g}, the gradient of a group's max (min, absmax when {@code abs}), to the elements that are that
     * extreme, split evenly between ties as torch's amax/amin do (with the element's sign when {@code abs}).
     */
    static void toExtreme(float[] x, int from, int n, float extreme, boolean abs, double g, float[] dx) {
        int ties = 0;
        for (int i = from; i < from + n; i++) if ((abs ? Math.abs(x[i]) : x[i]) == extreme) ties++;
        float share = (float) (g / ties);
        for (int i = from; i < from + n; i++) {
            if ((abs ? Math.abs(x[i]) : x[i]) == extreme) dx[i] += abs ? Math.signum(x[i]) * share : share;
        }
    }
}
