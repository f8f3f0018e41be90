package io.blockquant.algo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.model.FloatRounding;
import io.blockquant.quant.FpFormat;
import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.FpQuantizer;
import io.blockquant.quant.ScaleConstraint;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.TensorBackend;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * LoRC against exact facts: full rank reconstructs, a known-rank error is recovered exactly, and the rank-r
 * error equals sqrt(Σ discarded σ²) with the σ computed here by Jacobi eigenvalues of EᵀE (Eckart–Young).
 */
class LorcTest {

    static final TensorBackend BE = Nd4jBackend.INSTANCE;

    static float[] gaussian(Random rnd, int n, double sd) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (rnd.nextGaussian() * sd);
        return a;
    }

    /** W and its FP4 per-channel round-to-nearest Ŵ: a realistic quantization error. */
    static float[][] weightAndQuantized(Random rnd, int rows, int cols) {
        float[] w = gaussian(rnd, rows * cols, 0.05);
        float[] wq = w.clone();
        FpQuantizer.fakeQuantizeWeight(wq, rows, cols, new FpQuantSpec(FpFormat.E2M1, 0, ScaleConstraint.NONE));
        return new float[][] {w, wq};
    }

    static Lorc.Factors lorc(float[] w, float[] wq, int rows, int cols, int rank, LorcFactorFormat f) {
        return Lorc.factors(BE.fromFloats(w, rows, cols), BE.fromFloats(wq, rows, cols), rank, f);
    }

    static double frobeniusOfDifference(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
        return Math.sqrt(s);
    }

    /** Eigenvalues of a symmetric matrix by cyclic Jacobi rotations, descending (the reference for σ²). */
    static double[] symmetricEigenvalues(double[] a0, int n) {
        double[] a = a0.clone();
        for (int sweep = 0; sweep < 100; sweep++) {
            double off = 0;
            for (int p = 0; p < n; p++) for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
            if (off < 1e-30) break;
            for (int p = 0; p < n; p++) {
                for (int q = p + 1; q < n; q++) {
                    if (Math.abs(a[p * n + q]) < 1e-300) continue;
                    double theta = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q]);
                    double t = Math.signum(theta) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
                    if (theta == 0) t = 1;
                    double c = 1 / Math.sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < n; k++) { // A <- Jᵀ A J
                        double akp = a[k * n + p], akq = a[k * n + q];
                        a[k * n + p] = c * akp - s * akq;
                        a[k * n + q] = s * akp + c * akq;
                    }
                    for (int k = 0; k < n; k++) {
                        double apk = a[p * n + k], aqk = a[q * n + k];
                        a[p * n + k] = c * apk - s * aqk;
                        a[q * n + k] = s * apk + c * aqk;
                    }
                }
            }
        }
        double[] ev = new double[n];
        for (int i = 0; i < n; i++) ev[i] = a[i * n + i];
        Arrays.sort(ev);
        for (int i = 0; i < n / 2; i++) { double x = ev[i]; ev[i] = ev[n - 1 - i]; ev[n - 1 - i] = x; }
        return ev;
    }

    @ParameterizedTest(name = "{0}x{1}")
    @CsvSource({"12, 9", "9, 12", "10, 10"})
    void fullRankReconstructsW(int rows, int cols) {
        float[][] ww = weightAndQuantized(new Random(rows * 31 + cols), rows, cols);
        Lorc.Factors f = lorc(ww[0], ww[1], rows, cols, Math.min(rows, cols), LorcFactorFormat.FP32);
        float[] back = f.compensate(ww[1]);
        double err = frobeniusOfDifference(ww[0], back), e0 = frobeniusOfDifference(ww[0], ww[1]);
        assertTrue(e0 > 1e-3, "a real quantization error to start from: " + e0);
        assertTrue(err < 1e-5 * Math.max(1, e0) + 1e-6, "‖W − (Ŵ + UV)‖ = " + err + " (‖E‖ = " + e0 + ")");
    }

    @Test
    void aKnownRankErrorIsRecoveredExactly() {
        int rows = 14, cols = 11, k = 3;
        Random rnd = new Random(2);
        float[] a = gaussian(rnd, rows * k, 1), b = gaussian(rnd, k * cols, 0.1);
        float[] w = gaussian(rnd, rows * cols, 0.05), wq = new float[w.length];
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) {
                double e = 0;
                for (int m = 0; m < k; m++) e += (double) a[i * k + m] * b[m * cols + j];
                wq[i * cols + j] = (float) (w[i * cols + j] - e); // W − Ŵ has rank k
            }
        }
        for (int rank : new int[] {k, k + 2}) {
            Lorc.Factors f = lorc(w, wq, rows, cols, rank, LorcFactorFormat.FP32);
            double err = frobeniusOfDifference(w, f.compensate(wq));
            assertTrue(err < 1e-5, "rank " + rank + ": ‖W − (Ŵ + UV)‖ = " + err);
        }
        double below = frobeniusOfDifference(w, lorc(w, wq, rows, cols, k - 1, LorcFactorFormat.FP32).compensate(wq));
        assertTrue(below > 1e-2, "rank k − 1 cannot be exact: " + below);
    }

    @Test
    void errorOfRankRIsTheDiscardedSingularValues() {
        int rows = 12, cols = 9;
        float[][] ww = weightAndQuantized(new Random(4), rows, cols);
        double[] ete = new double[cols * cols]; // EᵀE in float64
        for (int i = 0; i < cols; i++) {
            for (int j = 0; j < cols; j++) {
                double s = 0;
                for (int r = 0; r < rows; r++) {
                    s += ((double) ww[0][r * cols + i] - ww[1][r * cols + i]) * ((double) ww[0][r * cols + j] - ww[1][r * cols + j]);
                }
                ete[i * cols + j] = s;
            }
        }
        double[] sigma2 = symmetricEigenvalues(ete, cols);
        for (int r = 0; r <= cols; r++) {
            double discarded = 0;
            for (int i = r; i < cols; i++) discarded += Math.max(0, sigma2[i]);
            double expected = Math.sqrt(discarded);
            double actual = frobeniusOfDifference(ww[0], lorc(ww[0], ww[1], rows, cols, r, LorcFactorFormat.FP32).compensate(ww[1]));
            assertEquals(expected, actual, 1e-4 * sigma2[0] + 1e-6, "rank " + r);
        }
    }

    /**
     * Weighted by the inputs (GPTQ's damped Hessian H), rank-r LoRC reaches the least output error
     * {@code tr(D·H·Dᵀ)}, {@code D = E − UV}: the sum of the discarded eigenvalues of {@code E·H·Eᵀ}, computed
     * here in float64 by Jacobi; with act-order's column permutation too; and never more than the plain SVD's.
     */
    @ParameterizedTest(name = "act-order {0}")
    @CsvSource({"false", "true"})
    void hessianWeightedRankRIsTheBestForTheOutputError(boolean actOrder) {
        int rows = 10, cols = 8, tokens = 64;
        Random rnd = new Random(6);
        float[][] ww = weightAndQuantized(rnd, rows, cols);
        double[] x = new double[cols * tokens]; // inputs with channel scales over two decades, as LLM activations have
        for (int c = 0; c < cols; c++) for (int t = 0; t < tokens; t++) x[c * tokens + t] = rnd.nextGaussian() * Math.pow(10, 2.0 * c / cols);
        double[] h = new double[cols * cols];
        for (int i = 0; i < cols; i++) {
            for (int j = 0; j < cols; j++) {
                double s = 0;
                for (int t = 0; t < tokens; t++) s += x[i * tokens + t] * x[j * tokens + t];
                h[i * cols + j] = 2 * s / tokens;
            }
        }
        GptqConfig cfg = new GptqConfig(new io.blockquant.quant.IntQuantSpec(4, 0, false), 0.01, 128, actOrder, false);
        GptqQuantizer.PreparedHessian prepared = GptqQuantizer.PreparedHessian.of(BE, h, cfg);
        double[] hd = h.clone(); // the damped H the factor holds
        double mean = 0;
        for (int c = 0; c < cols; c++) mean += h[c * cols + c];
        for (int c = 0; c < cols; c++) hd[c * cols + c] += 0.01 * mean / cols;
        double[] ehe = new double[rows * rows];
        for (int a = 0; a < rows; a++) {
            for (int b = 0; b < rows; b++) {
                double s = 0;
                for (int i = 0; i < cols; i++) {
                    for (int j = 0; j < cols; j++) {
                        s += ((double) ww[0][a * cols + i] - ww[1][a * cols + i]) * hd[i * cols + j]
                                * ((double) ww[0][b * cols + j] - ww[1][b * cols + j]);
                    }
                }
                ehe[a * rows + b] = s;
            }
        }
        double[] lambda = symmetricEigenvalues(ehe, rows);
        for (int r = 1; r < cols; r++) {
            double discarded = 0;
            for (int i = r; i < rows; i++) discarded += Math.max(0, lambda[i]);
            Lorc.Factors weighted = Lorc.factors(BE.fromFloats(ww[0], rows, cols), BE.fromFloats(ww[1], rows, cols), r,
                    LorcFactorFormat.FP32, prepared);
            double actual = outputError(ww[0], weighted.compensate(ww[1]), hd, rows, cols);
            assertEquals(discarded, actual, 1e-4 * lambda[0], "rank " + r);
            double plain = outputError(ww[0], lorc(ww[0], ww[1], rows, cols, r, LorcFactorFormat.FP32).compensate(ww[1]), hd, rows, cols);
            assertTrue(actual <= plain * (1 + 1e-5), "rank " + r + ": weighted " + actual + " > plain " + plain);
        }
    }

    /** {@code tr(D·H·Dᵀ)}, {@code D = W − W'}: the summed squared output error over the inputs behind H. */
    static double outputError(float[] w, float[] approx, double[] h, int rows, int cols) {
        double s = 0;
        for (int a = 0; a < rows; a++) {
            for (int i = 0; i < cols; i++) {
                for (int j = 0; j < cols; j++) {
                    s += ((double) w[a * cols + i] - approx[a * cols + i]) * h[i * cols + j] * ((double) w[a * cols + j] - approx[a * cols + j]);
                }
            }
        }
        return s;
    }

    @Test
    void singularValuesAreSplitEvenly() {
        int rows = 12, cols = 9, rank = 4;
        float[][] ww = weightAndQuantized(new Random(6), rows, cols);
        Lorc.Factors f = lorc(ww[0], ww[1], rows, cols, rank, LorcFactorFormat.FP32);
        // UᵀU = diag(S_r) = V·Vᵀ
        for (int i = 0; i < rank; i++) {
            for (int j = 0; j < rank; j++) {
                double utu = 0, vvt = 0;
                for (int r = 0; r < rows; r++) utu += (double) f.u()[r * rank + i] * f.u()[r * rank + j];
                for (int c = 0; c < cols; c++) vvt += (double) f.v()[i * cols + c] * f.v()[j * cols + c];
                assertEquals(utu, vvt, 1e-5, "UᵀU and VVᵀ at " + i + "," + j);
                if (i != j) assertEquals(0, utu, 1e-5);
            }
        }
    }

    @Test
    void fp16AndFp8Factors() {
        int rows = 16, cols = 24, rank = 6;
        float[][] ww = weightAndQuantized(new Random(8), rows, cols);
        Lorc.Factors f32 = lorc(ww[0], ww[1], rows, cols, rank, LorcFactorFormat.FP32);
        Lorc.Factors f16 = lorc(ww[0], ww[1], rows, cols, rank, LorcFactorFormat.FP16);
        Lorc.Factors f8 = lorc(ww[0], ww[1], rows, cols, rank, LorcFactorFormat.FP8);
        for (int i = 0; i < f32.u().length; i++) assertEquals(FloatRounding.toFloat16(f32.u()[i]), f16.u()[i], 0f);
        for (int i = 0; i < f32.v().length; i++) assertEquals(FloatRounding.toFloat16(f32.v()[i]), f16.v()[i], 0f);
        // FP8: every row of U and of V is E4M3 values times that row's absmax/448
        checkFp8Rows(f32.u(), f8.u(), rows, rank);
        checkFp8Rows(f32.v(), f8.v(), rank, cols);
        double e0 = frobeniusOfDifference(ww[0], ww[1]);
        double e32 = frobeniusOfDifference(ww[0], f32.compensate(ww[1]));
        double e16 = frobeniusOfDifference(ww[0], f16.compensate(ww[1]));
        double e8 = frobeniusOfDifference(ww[0], f8.compensate(ww[1]));
        assertTrue(e32 < e0 && e16 < e0 && e8 < e0, "compensation helps: " + e0 + " -> " + e32 + ", " + e16 + ", " + e8);
        assertTrue(Math.abs(e16 - e32) < 0.01 * e32, "FP16 factors cost little");
    }

    static void checkFp8Rows(float[] full, float[] q, int rows, int cols) {
        for (int r = 0; r < rows; r++) {
            float m = 0;
            for (int c = 0; c < cols; c++) m = Math.max(m, Math.abs(full[r * cols + c]));
            float s = m / 448f;
            for (int c = 0; c < cols; c++) {
                float expected = FpFormat.E4M3.round(full[r * cols + c] / s) * s;
                assertEquals(expected, q[r * cols + c], 0f, "FP8 factor row " + r + " col " + c);
            }
        }
    }

    @Test
    void badRankIsAClearError() {
        float[][] ww = weightAndQuantized(new Random(1), 4, 8);
        var e = assertThrows(IllegalArgumentException.class, () -> lorc(ww[0], ww[1], 4, 8, 5, LorcFactorFormat.FP32));
        assertTrue(e.getMessage().contains("rank 5"));
    }
}
