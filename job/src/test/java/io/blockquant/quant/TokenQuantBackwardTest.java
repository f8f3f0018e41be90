package io.blockquant.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.FiniteDifferences;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The per-token quantizers' backward against central differences of the function the reference's autograd
 * differentiates: every discrete decision (rounding offsets, zero point, cut levels, which element is the
 * extreme) recorded at x and held, the scale recomputed from the extremes.
 */
class TokenQuantBackwardTest {

    static TokenQuant rule(String name) {
        return switch (name) {
            case "int4" -> TokenQuant.integer(4, false);
            case "int4-asym" -> TokenQuant.integer(4, true);
            case "int6-asym" -> TokenQuant.integer(6, true);
            case "e4m3" -> TokenQuant.fp8(FpFormat.E4M3);
            default -> throw new AssertionError(name);
        };
    }

    /** One row's forward with x's decisions held: y = a + s(a)·offset inside the range, s(a)·(level − z) where cut. */
    record Replay(TokenQuant q, float[] x) {
        double levels() {
            return q.format() != null ? q.format().maxValue() : q.asymmetric() ? (1 << q.bits()) - 1 : (1 << (q.bits() - 1)) - 1;
        }

        int extreme(boolean max) {
            int e = 0;
            for (int i = 0; i < x.length; i++) {
                double v = q.asymmetric() ? x[i] : Math.abs(x[i]), best = q.asymmetric() ? x[e] : Math.abs(x[e]);
                if (max ? v > best : x[i] < x[e]) e = i;
            }
            return e;
        }

        double scale(double[] a) {
            int mx = extreme(true), mn = extreme(false);
            return q.asymmetric() ? (a[mx] - a[mn]) / levels() : Math.abs(a[mx]) / levels();
        }

        /** Σ dy·y(a) with the decisions taken at x. */
        double dot(double[] a, float[] dy) {
            double[] xd = new double[x.length];
            for (int i = 0; i < x.length; i++) xd[i] = x[i];
            double s0 = scale(xd), s = scale(a), sum = 0;
            double zero = q.asymmetric() ? Math.rint(-x[extreme(false)] / (float) s0) : 0;
            int qmax = (1 << q.bits()) - 1;
            for (int i = 0; i < x.length; i++) {
                double t = x[i] / (float) s0, y;
                if (q.format() != null) {
                    y = a[i] + s * (FpQuantizer.fakeQuantize((float) t, 1f, q.format()) - t);
                } else if (q.asymmetric() && (Math.rint(t) + zero < 0 || Math.rint(t) + zero > qmax)) {
                    y = s * ((Math.rint(t) + zero < 0 ? 0 : qmax) - zero);
                } else {
                    y = a[i] + s * (Math.rint(t) - t);
                }
                sum += dy[i] * y;
            }
            return sum;
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"int4", "int4-asym", "int6-asym", "e4m3"})
    void gradientMatchesFiniteDifferencesOfTheReplayedQuantizer(String name) {
        TokenQuant q = rule(name);
        Random rnd = new Random(3);
        int rows = 4, cols = 48;
        float[] x = new float[rows * cols], dy = new float[rows * cols];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
            dy[i] = (float) rnd.nextGaussian();
        }
        for (int r = 0; r < rows; r++) x[r * cols + 5 + r] *= 20f;  // an outlier channel per row, as activations have
        float[] dx = new float[x.length];
        TokenQuantBackward.backward(x, dy, rows, cols, q, dx);
        boolean routed = false;
        for (int r = 0; r < rows; r++) {
            float[] xr = java.util.Arrays.copyOfRange(x, r * cols, (r + 1) * cols);
            float[] dyr = java.util.Arrays.copyOfRange(dy, r * cols, (r + 1) * cols);
            Replay replay = new Replay(q, xr);
            double[] a = new double[cols];
            for (int i = 0; i < cols; i++) a[i] = xr[i];
            double[] fd = FiniteDifferences.central(a, 1e-4, () -> replay.dot(a, dyr));
            for (int i = 0; i < cols; i++) {
                assertEquals(fd[i], dx[r * cols + i], 1e-3 * (1 + Math.abs(fd[i])), name + " row " + r + " element " + i);
                routed |= Math.abs(fd[i] - dyr[i]) > 1e-2;   // the scale's term is really there (not the identity)
            }
        }
        assertTrue(routed, "the scale's gradient changes some element's gradient");
    }

    @Test
    void tiedExtremesShareTheScalesGradientAndAZeroRowIsTheIdentity() {
        // asymmetric 2 bits, row {-1, 2, 2, 0.5}: max 2 twice, min −1, s = 1, z = 1; levels round(x) + 1 ∈ [0, 3]
        float[] x = {-1f, 2f, 2f, 0.5f}, dy = {1f, 1f, 1f, 1f}, dx = new float[4];
        TokenQuantBackward.backward(x, dy, 1, 4, TokenQuant.integer(2, true), dx);
        // in range everywhere; dScale = Σ dy·(round(t) − t) = 0 + 0 + 0 + (0 − 0.5) (0.5 rounds to even 0) = −0.5
        // → max gets −0.5/3 shared by two, min gets +0.5/3
        assertArrayEquals(new float[] {1f + 0.5f / 3, 1f - 0.25f / 3, 1f - 0.25f / 3, 1f}, dx, 1e-6f);

        float[] zero = new float[4];
        TokenQuantBackward.backward(zero, dy, 1, 4, TokenQuant.integer(4, false), dx);
        assertArrayEquals(dy, dx, "an all-zero row is left as it is, so its gradient passes unchanged");
    }
}
