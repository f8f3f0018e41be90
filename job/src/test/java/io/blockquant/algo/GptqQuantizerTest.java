package io.blockquant.algo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.IntQuantizer;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** GPTQ against a straightforward, column-by-column implementation of the same update. */
class GptqQuantizerTest {

    static final TensorBackend BE = Nd4jBackend.INSTANCE;
    static final int ROWS = 24, COLS = 96, TOKENS = 512;

    /** Correlated inputs (as real activations are) so the Hessian has structure to exploit. */
    static float[] inputs(Random rnd) {
        float[] x = new float[TOKENS * COLS];
        for (int t = 0; t < TOKENS; t++) {
            double common = rnd.nextGaussian();
            for (int c = 0; c < COLS; c++) {
                x[t * COLS + c] = (float) (0.7 * common * (1 + c % 5) + rnd.nextGaussian() * (c % 7 == 0 ? 3 : 1));
            }
        }
        return x;
    }

    static float[] weights(Random rnd) {
        float[] w = new float[ROWS * COLS];
        for (int i = 0; i < w.length; i++) w[i] = (float) (rnd.nextGaussian() * 0.05);
        return w;
    }

    static double[] hessian(float[] x) {
        HessianAccumulator acc = new HessianAccumulator(COLS);
        acc.add(BE.fromFloats(java.util.Arrays.copyOfRange(x, 0, TOKENS / 2 * COLS), TOKENS / 2, COLS));
        HessianAccumulator other = new HessianAccumulator(COLS);
        other.add(BE.fromFloats(java.util.Arrays.copyOfRange(x, TOKENS / 2 * COLS, x.length), TOKENS / 2, COLS));
        return acc.merge(other).hessian();
    }

    /** A layer's squared output over every token, from the Gram sum alone: tr(A·Σ·Aᵀ) = ‖X·Aᵀ‖². */
    @Test
    void quadraticFormsOfTheGramSumAreTheSquaredOutputs() {
        Random rnd = new Random(7);
        float[] x = inputs(rnd), w = weights(rnd), d = weights(rnd);
        for (int i = 0; i < d.length; i++) d[i] *= 0.1f; // a small A, as W − Ŵ is
        HessianAccumulator sum = new HessianAccumulator(COLS);
        sum.add(BE.fromFloats(java.util.Arrays.copyOfRange(x, 0, TOKENS / 2 * COLS), TOKENS / 2, COLS));
        sum.add(BE.fromFloats(java.util.Arrays.copyOfRange(x, TOKENS / 2 * COLS, x.length), TOKENS / 2, COLS));
        double[] f = sum.quadraticForms(BE.fromFloats(d, ROWS, COLS), BE.fromFloats(w, ROWS, COLS));
        assertEquals(2, f.length);
        assertEquals(direct(x, d), f[0], 1e-5 * direct(x, d));
        assertEquals(direct(x, w), f[1], 1e-5 * direct(x, w));
    }

    /** {@code Σ_t ‖A·x_t‖²} in float64, token by token. */
    private static double direct(float[] x, float[] a) {
        double total = 0;
        for (int t = 0; t < TOKENS; t++) {
            for (int r = 0; r < ROWS; r++) {
                double y = 0;
                for (int c = 0; c < COLS; c++) y += (double) a[r * COLS + c] * x[t * COLS + c];
                total += y * y;
            }
        }
        return total;
    }

    /** The update of Algorithm 1 without lazy batches: every column's error goes to every later column at once. */
    static float[] naiveGptq(float[] w0, double[] h0, IntQuantSpec spec, boolean actOrder, float[] u) {
        int group = spec.perChannel() ? COLS : spec.groupSize(), maxq = spec.maxLevel();
        float[] w = w0.clone();
        int[] perm = java.util.stream.IntStream.range(0, COLS).toArray();
        if (actOrder) {
            perm = java.util.stream.IntStream.range(0, COLS).boxed()
                    .sorted((a, b) -> Double.compare(h0[b * COLS + b], h0[a * COLS + a])).mapToInt(i -> i).toArray();
        }
        IntQuantizer.Params[] p = new IntQuantizer.Params[ROWS];
        for (int r = 0; r < ROWS; r++) p[r] = IntQuantizer.params(w, r * COLS, (r + 1) * COLS, spec.bits(), spec.symmetric());
        for (int j = 0; j < COLS; j++) {
            int c = perm[j];
            if (!spec.perChannel() && j % group == 0) {
                for (int r = 0; r < ROWS; r++) {
                    float[] g = new float[group];
                    for (int k = 0; k < group; k++) g[k] = w[r * COLS + perm[j + k]];
                    p[r] = IntQuantizer.params(g, 0, group, spec.bits(), spec.symmetric());
                }
            }
            for (int r = 0; r < ROWS; r++) {
                float q = IntQuantizer.fakeQuantize(w[r * COLS + c], p[r], maxq);
                float e = (w[r * COLS + c] - q) / u[j * COLS + j];
                w[r * COLS + c] = q;
                for (int k = j + 1; k < COLS; k++) w[r * COLS + perm[k]] -= e * u[j * COLS + k];
            }
        }
        return w;
    }

    @ParameterizedTest(name = "W{0} group {1} act-order {2}")
    @CsvSource({"4, 0, false", "3, 32, false", "2, 32, false", "4, 0, true", "3, 32, true"})
    void matchesTheStraightforwardUpdate(int bits, int group, boolean actOrder) {
        Random rnd = new Random(7);
        float[] x = inputs(rnd), w = weights(rnd);
        double[] h = hessian(x);
        IntQuantSpec spec = new IntQuantSpec(bits, group, false);
        // lazy batches of 32 columns, groups of 32: every group starts at a block boundary
        QuantizedLinear q = GptqQuantizer.quantize(BE.fromFloats(w, ROWS, COLS), h, new GptqConfig(spec, 0.01, 32, actOrder, false));

        double[] damped = h.clone();
        int[] perm = java.util.stream.IntStream.range(0, COLS).toArray();
        if (actOrder) {
            perm = java.util.stream.IntStream.range(0, COLS).boxed()
                    .sorted((a, b) -> Double.compare(h[b * COLS + b], h[a * COLS + a])).mapToInt(i -> i).toArray();
        }
        double mean = 0;
        for (int c = 0; c < COLS; c++) mean += h[c * COLS + c] / COLS;
        double[] hp = new double[h.length];
        for (int i = 0; i < COLS; i++) for (int j = 0; j < COLS; j++) hp[i * COLS + j] = damped[perm[i] * COLS + perm[j]];
        for (int c = 0; c < COLS; c++) hp[c * COLS + c] += 0.01 * mean;
        float[] u = GptqQuantizer.upperCholeskyOfInverse(BE, hp, COLS);

        float[] expected = naiveGptq(w, h, spec, actOrder, u);
        float[] actual = q.dequantize();
        double maxDiff = 0;
        for (int i = 0; i < actual.length; i++) maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
        assertTrue(maxDiff <= 1e-4, "max |Ŵ_lazy − Ŵ_naive| = " + maxDiff);
        for (int l : q.levels()) assertTrue(l >= 0 && l <= spec.maxLevel());
    }

    @Test
    void upperFactorOfTheInverseIsExact() {
        Random rnd = new Random(3);
        double[] h = hessian(inputs(rnd));
        for (int c = 0; c < COLS; c++) h[c * COLS + c] += 0.01;
        float[] u = GptqQuantizer.upperCholeskyOfInverse(BE, h, COLS);
        // Uᵀ·U·H = I, checked in float64
        double worst = 0;
        for (int i = 0; i < COLS; i++) {
            for (int j = 0; j < COLS; j++) {
                double s = 0;
                for (int k = 0; k < COLS; k++) {
                    double uu = 0;
                    for (int m = 0; m <= Math.min(i, k); m++) uu += (double) u[m * COLS + i] * u[m * COLS + k];
                    s += uu * h[k * COLS + j];
                }
                worst = Math.max(worst, Math.abs(s - (i == j ? 1 : 0)));
                if (i > j) assertEquals(0f, u[i * COLS + j], "U must be upper triangular");
            }
        }
        assertTrue(worst < 1e-3, "‖UᵀUH − I‖max = " + worst);
    }

    @Test
    void beatsRoundToNearestOnTheLayerOutput() {
        Random rnd = new Random(11);
        float[] x = inputs(rnd), w = weights(rnd);
        double[] h = hessian(x);
        for (int bits : new int[] {2, 3, 4}) {
            IntQuantSpec spec = new IntQuantSpec(bits, 32, false);
            float[] gptq = GptqQuantizer.quantize(BE.fromFloats(w, ROWS, COLS), h, GptqConfig.of(spec)).dequantize();
            float[] rtn = w.clone();
            IntQuantizer.fakeQuantizeWeight(rtn, ROWS, COLS, spec);
            double eG = outputError(x, w, gptq), eR = outputError(x, w, rtn);
            assertTrue(eG < 0.8 * eR, "W" + bits + ": GPTQ output error " + eG + " vs RTN " + eR);
        }
    }

    @Test
    void deadColumnsAreZeroed() {
        Random rnd = new Random(5);
        float[] x = inputs(rnd), w = weights(rnd);
        for (int t = 0; t < TOKENS; t++) x[t * COLS + 10] = 0f; // input 10 never fires
        QuantizedLinear q = GptqQuantizer.quantize(BE.fromFloats(w, ROWS, COLS), hessian(x),
                GptqConfig.of(new IntQuantSpec(4, 0, false)));
        float[] d = q.dequantize();
        for (int r = 0; r < ROWS; r++) assertEquals(0f, d[r * COLS + 10], 1e-7f);
    }

    static double outputError(float[] x, float[] w, float[] wq) {
        Tensor xt = BE.fromFloats(x, TOKENS, COLS);
        float[] y = BE.matmul(xt, BE.fromFloats(w, ROWS, COLS), false, true).toFloats();
        float[] yq = BE.matmul(xt, BE.fromFloats(wq, ROWS, COLS), false, true).toFloats();
        double e = 0;
        for (int i = 0; i < y.length; i++) e += (y[i] - yq[i]) * (y[i] - yq[i]);
        return e;
    }
}
