package io.blockquant.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU backend's ops of OmniQuant's resident training step: each backward against central finite differences
 * of a float64 re-implementation of its forward written here (for LWC's quantizer with every discrete decision of
 * the base point held fixed, which is what the straight-through estimator differentiates), the forwards against
 * that re-implementation, and AdamW against the float64 arithmetic of the heap optimizer it replaces.
 */
class TrainingOpsTest {

    private static final TensorBackend BE = Nd4jBackend.INSTANCE;
    private static final double H = 1e-6;

    private static float[] gaussian(Random rnd, int n, double std) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (std * rnd.nextGaussian());
        return v;
    }

    private static float[] uniform(Random rnd, int n, double lo, double hi) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (lo + (hi - lo) * rnd.nextDouble());
        return v;
    }

    private static double[] toDouble(float[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < v.length; i++) d[i] = v[i];
        return d;
    }

    private static Tensor vec(float[] v) {
        return v == null ? null : BE.fromFloats(v, v.length);
    }

    /** Central differences of {@code f} in every element of {@code p} (p is restored). */
    private static double[] finiteDifferences(double[] p, java.util.function.DoubleSupplier f) {
        return io.blockquant.FiniteDifferences.central(p, H, f);
    }

    /**
     * The analytic gradient is float32 (relative rounding ~1e-6 per operation, sums of ≤ 100 terms); the central
     * difference of a float64 function with h = 1e-6 is exact to ~1e-8 of its scale: 1e-4 of the vector's largest
     * gradient absorbs the first and still fails on any wrong or missing term.
     */
    private static void matches(double[] fd, float[] analytic, String what) {
        assertEquals(fd.length, analytic.length, what + ": length");
        double scale = 0;
        for (double v : fd) scale = Math.max(scale, Math.abs(v));
        assertTrue(scale > 1e-3, what + ": the check is vacuous (largest gradient " + scale + ")");
        for (int i = 0; i < fd.length; i++) {
            assertEquals(fd[i], analytic[i], 1e-4 * scale, what + "[" + i + "]: analytic " + analytic[i] + " vs finite difference " + fd[i]);
        }
    }

    // ---- LWC's clipped quantizer (eq. 2–3) ---------------------------------------------------------

    /** Σ dOut·Ŵ in float64, with zero points, max/min positions, clamped levels and round offsets of the base point. */
    private static final class ClippedLoss {
        final int rows, cols, group, maxq;
        final double[] dOut, zero, offset;
        final int[] argMax, argMin, level;

        ClippedLoss(double[] w, double[] gamma, double[] beta, int rows, int cols, int group, int bits, double[] dOut) {
            this.rows = rows;
            this.cols = cols;
            this.group = group;
            this.maxq = (1 << bits) - 1;
            this.dOut = dOut;
            int groups = rows * cols / group;
            zero = new double[groups];
            argMax = new int[groups];
            argMin = new int[groups];
            level = new int[w.length];
            offset = new double[w.length];
            for (int k = 0; k < groups; k++) {
                int from = (k / (cols / group)) * cols + (k % (cols / group)) * group;
                int mx = from, mn = from;
                for (int i = from; i < from + group; i++) {
                    if (w[i] > w[mx]) mx = i;
                    if (w[i] < w[mn]) mn = i;
                }
                argMax[k] = mx;
                argMin[k] = mn;
                double l = sigmoid(beta[k]) * w[mn], scale = (sigmoid(gamma[k]) * w[mx] - l) / maxq;
                zero[k] = Math.rint(-l / scale);
                for (int i = from; i < from + group; i++) {
                    double t = w[i] / scale, pre = Math.rint(t) + zero[k];
                    level[i] = pre < 0 ? 0 : pre > maxq ? maxq : -1;
                    offset[i] = Math.rint(t) - t;
                }
            }
        }

        static double sigmoid(double v) {
            return 1 / (1 + Math.exp(-v));
        }

        double loss(double[] w, double[] gamma, double[] beta) {
            double s = 0;
            for (int k = 0; k < zero.length; k++) {
                int from = (k / (cols / group)) * cols + (k % (cols / group)) * group;
                double scale = (sigmoid(gamma[k]) * w[argMax[k]] - sigmoid(beta[k]) * w[argMin[k]]) / maxq;
                for (int i = from; i < from + group; i++) {
                    double q = level[i] >= 0 ? scale * (level[i] - zero[k]) : scale * (w[i] / scale + offset[i]);
                    s += dOut[i] * q;
                }
            }
            return s;
        }
    }

    @ParameterizedTest(name = "W{0} group {1}")
    @CsvSource({"3, 8", "4, 24", "2, 12"})
    void clippedQuantizerGradientsMatchFiniteDifferences(int bits, int group) {
        int rows = 6, cols = 24, groups = rows * cols / group;
        Random rnd = new Random(bits * 100 + group);
        float[] w = gaussian(rnd, rows * cols, 1), gamma = uniform(rnd, groups, 0.5, 4), beta = uniform(rnd, groups, 0.5, 4);
        float[] dOut = gaussian(rnd, rows * cols, 1);
        Tensor wt = BE.fromFloats(w, rows, cols), gt = vec(gamma), bt = vec(beta);
        float[] forward = BE.fakeQuantizeClipped(wt, gt, bt, group, bits).toFloats();
        Tensor[] g = BE.fakeQuantizeClippedBackward(wt, gt, bt, group, bits, BE.fromFloats(dOut, rows, cols));

        double[] wd = toDouble(w), gd = toDouble(gamma), bd = toDouble(beta);
        ClippedLoss ref = new ClippedLoss(wd, gd, bd, rows, cols, group, bits, toDouble(dOut));
        // the forward: the same grid in float64 (Ŵ per element, against dOut = one-hot sums)
        int clamped = 0;
        for (int i = 0; i < w.length; i++) if (ref.level[i] >= 0) clamped++;
        assertTrue(clamped > 0 && clamped < w.length, "clipping cuts some weights and keeps others (" + clamped + ")");
        double fwd = 0;
        for (int i = 0; i < w.length; i++) fwd += dOut[i] * forward[i];
        assertEquals(ref.loss(wd, gd, bd), fwd, 1e-5 * w.length, "Σ dOut·Ŵ of the op and of the float64 grid");

        matches(finiteDifferences(gd, () -> ref.loss(wd, gd, bd)), g[1].toFloats(), "dγ");
        matches(finiteDifferences(bd, () -> ref.loss(wd, gd, bd)), g[2].toFloats(), "dβ");
        matches(finiteDifferences(wd, () -> ref.loss(wd, gd, bd)), g[0].toFloats(), "dW");
    }

    @Test
    void clippingSwitchedOffHasNoClippingGradient() {
        Random rnd = new Random(3);
        float[] w = gaussian(rnd, 4 * 16, 1), inf = new float[4];
        java.util.Arrays.fill(inf, Float.POSITIVE_INFINITY);
        Tensor[] g = BE.fakeQuantizeClippedBackward(BE.fromFloats(w, 4, 16), vec(inf), vec(inf), 16, 3,
                BE.fromFloats(gaussian(rnd, 64, 1), 4, 16));
        for (float v : g[1].toFloats()) assertEquals(0.0, v, 0.0); // σ'(∞) = 0 (either sign of zero)
        for (float v : g[2].toFloats()) assertEquals(0.0, v, 0.0);
        double norm = 0;
        for (float v : g[0].toFloats()) norm += Math.abs(v);
        assertTrue(norm > 1, "the weight still gets its straight-through gradient");
    }

    // ---- LET on a linear (eq. 4–6) -------------------------------------------------------------------

    /** Σ G⊙W2 + Σ g⊙b2 in float64, W2 = diag(r)·W·diag(s), b2 = r⊙(b + W·δ − δr) (null: identity / absent). */
    private static double letLoss(double[] w, int out, int in, double[] b, double[] s, double[] d, double[] r, double[] dr,
                                  double[] gw, double[] gb) {
        double loss = 0;
        for (int o = 0; o < out; o++) {
            double f = r == null ? 1 : r[o], b1 = b == null ? 0 : b[o];
            for (int c = 0; c < in; c++) {
                loss += gw[o * in + c] * f * w[o * in + c] * (s == null ? 1 : s[c]);
                if (d != null) b1 += w[o * in + c] * d[c];
            }
            if (gb != null) loss += gb[o] * f * (b1 - (dr == null ? 0 : dr[o]));
        }
        return loss;
    }

    @ParameterizedTest(name = "bias {0}, column scale {1}, column shift {2}, row factor {3}, row shift {4}")
    @CsvSource({
        "true, true, true, true, true",
        "false, true, true, false, false",
        "false, false, false, true, false",
        "true, true, false, true, false",
        "true, false, true, false, true"})
    void scaleShiftGradientsMatchFiniteDifferences(boolean bias, boolean colScale, boolean colShift, boolean rowFactor,
                                                   boolean rowShift) {
        int out = 7, in = 11;
        Random rnd = new Random(17);
        float[] w = gaussian(rnd, out * in, 1), b = bias ? gaussian(rnd, out, 1) : null;
        float[] s = colScale ? uniform(rnd, in, 0.5, 2) : null, d = colShift ? gaussian(rnd, in, 0.3) : null;
        float[] r = rowFactor ? uniform(rnd, out, 0.5, 2) : null, dr = rowShift ? gaussian(rnd, out, 0.3) : null;
        Tensor[] f = BE.scaleShiftLinear(BE.fromFloats(w, out, in), vec(b), vec(s), vec(d), vec(r), vec(dr));
        boolean hasBias = bias || colShift;
        assertEquals(hasBias, f[1] != null, "a bias comes out exactly when one goes in or a shift makes one");
        float[] gw = gaussian(rnd, out * in, 1), gb = hasBias ? gaussian(rnd, out, 1) : null;

        double[] wd = toDouble(w), bd = b == null ? null : toDouble(b);
        double[] sd = s == null ? null : toDouble(s), dd = d == null ? null : toDouble(d);
        double[] rd = r == null ? null : toDouble(r), drd = dr == null ? null : toDouble(dr);
        double[] gwd = toDouble(gw), gbd = gb == null ? null : toDouble(gb);
        // the forward, element by element
        float[] w2 = f[0].toFloats();
        for (int o = 0; o < out; o++) {
            for (int c = 0; c < in; c++) {
                double e = w[o * in + c] * (s == null ? 1 : s[c]) * (r == null ? 1 : r[o]);
                assertEquals(e, w2[o * in + c], 1e-6 * Math.max(1, Math.abs(e)), "W2[" + o + ", " + c + "]");
            }
        }
        if (hasBias) {
            float[] b2 = f[1].toFloats();
            for (int o = 0; o < out; o++) {
                double e = b == null ? 0 : b[o];
                if (d != null) for (int c = 0; c < in; c++) e += (double) w[o * in + c] * d[c];
                e = (e - (dr == null ? 0 : dr[o])) * (r == null ? 1 : r[o]);
                assertEquals(e, b2[o], 1e-5 * Math.max(1, Math.abs(e)), "b2[" + o + "]");
            }
        }

        Tensor[] g = BE.scaleShiftLinearBackward(BE.fromFloats(w, out, in), vec(b), vec(s), vec(d), vec(r), vec(dr),
                BE.fromFloats(gw, out, in), vec(gb));
        java.util.function.DoubleSupplier loss = () -> letLoss(wd, out, in, bd, sd, dd, rd, drd, gwd, gbd);
        double[][] inputs = {sd, dd, rd, drd};
        String[] names = {"d colScale", "d colShift", "d rowFactor", "d rowShift"};
        for (int k = 0; k < 4; k++) {
            if (inputs[k] == null || (k == 1 || k == 3) && !hasBias) {
                if (inputs[k] == null) assertNull(g[k], names[k] + " of an absent vector");
                continue;
            }
            matches(finiteDifferences(inputs[k], loss), g[k].toFloats(), names[k]);
        }
    }

    // ---- the index scatter, reciprocal, division -------------------------------------------------------

    @Test
    void scatterAddColumnsIsTheBackwardOfSelectColumns() {
        Random rnd = new Random(5);
        int rows = 3, width = 6;
        int[] columns = {4, 0, 4, 2, 4, 0};                       // column 4 thrice, 1, 3 and 5 never
        float[] x = gaussian(rnd, rows * width, 1), g = gaussian(rnd, rows * columns.length, 1);
        // ⟨g, select(x)⟩ is linear in x: its finite differences are the scatter of g
        double[] xd = toDouble(x);
        double[] fd = finiteDifferences(xd, () -> {
            double s = 0;
            for (int r = 0; r < rows; r++) for (int j = 0; j < columns.length; j++) s += g[r * columns.length + j] * xd[r * width + columns[j]];
            return s;
        });
        float[] got = BE.scatterAddColumns(BE.fromFloats(g, rows, columns.length), columns, width).toFloats();
        matches(fd, got, "scatter");
        float[] selected = BE.selectColumns(BE.fromFloats(x, rows, width), columns).toFloats();
        for (int r = 0; r < rows; r++) for (int j = 0; j < columns.length; j++) assertEquals(x[r * width + columns[j]], selected[r * columns.length + j]);
    }

    @Test
    void reciprocalAndDivisionAreFloat32Arithmetic() {
        Random rnd = new Random(6);
        float[] a = gaussian(rnd, 40, 1), b = uniform(rnd, 40, 0.3, 3);
        float[] inv = BE.reciprocal(vec(b)).toFloats(), q = BE.div(vec(a), vec(b)).toFloats();
        for (int i = 0; i < a.length; i++) {
            assertEquals(1f / b[i], inv[i]);
            assertEquals(a[i] / b[i], q[i]);
        }
    }

    // ---- optimizer ---------------------------------------------------------------------------------------

    @Test
    void adamWMatchesTheFloat64Update() {
        Random rnd = new Random(7);
        int n = 50;
        float[] p0 = gaussian(rnd, n, 1);
        double lr = 0.01, wd = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
        Tensor p = vec(p0.clone()), m = BE.zeros(n), v = BE.zeros(n);
        double[] pr = toDouble(p0), mr = new double[n], vr = new double[n];
        for (int step = 1; step <= 4; step++) {
            float[] g = gaussian(rnd, n, step == 3 ? 1e-3 : 1);
            BE.adamW(p, vec(g), m, v, step, lr, b1, b2, eps, wd);
            // torch.optim.AdamW: decoupled decay, bias-corrected moments (the heap optimizer's float64 arithmetic)
            double c1 = 1 - Math.pow(b1, step), c2 = 1 - Math.pow(b2, step);
            for (int i = 0; i < n; i++) {
                pr[i] *= 1 - lr * wd;
                mr[i] = b1 * mr[i] + (1 - b1) * g[i];
                vr[i] = b2 * vr[i] + (1 - b2) * g[i] * g[i];
                pr[i] -= lr * (mr[i] / c1) / (Math.sqrt(vr[i] / c2) + eps);
            }
        }
        // the moments are kept in float32 (as torch keeps them for float32 parameters): ~1e-7 of the moments' scale per
        // step (a moment that sign changes of g nearly cancelled has a larger relative error, not a larger absolute one)
        float[] pv = p.toFloats(), mv = m.toFloats(), vv = v.toFloats();
        double mScale = 0, vScale = 0;
        for (int i = 0; i < n; i++) {
            mScale = Math.max(mScale, Math.abs(mr[i]));
            vScale = Math.max(vScale, Math.abs(vr[i]));
        }
        for (int i = 0; i < n; i++) {
            assertEquals(pr[i], pv[i], 1e-6 * Math.max(1, Math.abs(pr[i])), "p[" + i + "]");
            assertEquals(mr[i], mv[i], 1e-6 * mScale, "m[" + i + "]");
            assertEquals(vr[i], vv[i], 1e-6 * vScale, "v[" + i + "]");
        }
        assertTrue(Math.abs(pv[0] - p0[0]) > 1e-3, "the parameters moved");
    }

    @Test
    void clampAwayFromZeroIsTruncateNumber() {
        float[] x = {0.5f, -0.5f, 0.004f, -0.004f, 0f, 0.01f, -0.0099f, 3f};
        Tensor t = vec(x.clone());
        BE.clampAwayFromZero(t, 0.01f);
        float[] expected = {0.5f, -0.5f, 0.01f, -0.01f, 0.01f, 0.01f, -0.01f, 3f};
        float[] got = t.toFloats();
        for (int i = 0; i < x.length; i++) assertEquals(expected[i], got[i], "x[" + i + "] = " + x[i]);
    }
}
