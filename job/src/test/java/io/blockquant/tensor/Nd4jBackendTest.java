package io.blockquant.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Every op of the CPU backend against a plain-Java reference computed here in float64. */
class Nd4jBackendTest {

    private static final TensorBackend BE = Nd4jBackend.INSTANCE;

    private static float[] random(Random rnd, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) rnd.nextGaussian();
        return v;
    }

    private static Tensor tensor(float[] v, long... shape) {
        return BE.fromFloats(v, shape);
    }

    /** |a − b| ≤ tol·max(1, |b|) element-wise, with the first bad index in the message. */
    private static void close(double[] expected, float[] actual, double tol, String what) {
        assertEquals(expected.length, actual.length, what + ": length");
        for (int i = 0; i < expected.length; i++) {
            double err = Math.abs(actual[i] - expected[i]);
            if (!(err <= tol * Math.max(1.0, Math.abs(expected[i])))) {
                throw new AssertionError(what + "[" + i + "]: expected " + expected[i] + ", got " + actual[i]
                        + " (error " + err + ")");
            }
        }
    }

    private static void close(float[] expected, float[] actual, double tol, String what) {
        double[] e = new double[expected.length];
        for (int i = 0; i < e.length; i++) e[i] = expected[i];
        close(e, actual, tol, what);
    }

    /** Row-major [m, k]·[k, n] in float64. */
    private static double[] mm(float[] a, float[] b, int m, int k, int n) {
        double[] c = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double) a[i * k + p] * b[p * n + j];
                c[i * n + j] = s;
            }
        }
        return c;
    }

    private static float[] transpose(float[] a, int rows, int cols) {
        float[] t = new float[a.length];
        for (int i = 0; i < rows; i++) for (int j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
        return t;
    }

    private static float[] toFloat(double[] d) {
        float[] f = new float[d.length];
        for (int i = 0; i < d.length; i++) f[i] = (float) d[i];
        return f;
    }

    // ---- creation, layout ------------------------------------------------------------------------

    @Test
    void fromFloatsRoundTripsAndChecksLength() {
        float[] v = random(new Random(1), 12);
        Tensor t = tensor(v, 3, 4);
        assertArrayEquals(new long[] {3, 4}, t.shape());
        assertArrayEquals(v, t.toFloats());
        assertArrayEquals(new float[6], BE.zeros(2, 3).toFloats());
        assertThrows(IllegalArgumentException.class, () -> BE.fromFloats(v, 5, 3));
        assertArrayEquals(transpose(v, 3, 4), BE.transpose(t).toFloats());
        assertArrayEquals(new long[] {4, 3}, BE.transpose(t).shape());
        assertArrayEquals(java.util.Arrays.copyOfRange(v, 4, 12), BE.rows(t, 1, 3).toFloats());
        assertArrayEquals(new float[] {v[1], v[2], v[5], v[6], v[9], v[10]}, BE.columns(t, 1, 3).toFloats());
    }

    @Test
    void selectColumns() {
        Random rnd = new Random(2);
        int rows = 5, cols = 7;
        float[] x = random(rnd, rows * cols);
        int[] pick = {6, 0, 3, 3, 1};
        float[] got = BE.selectColumns(tensor(x, rows, cols), pick).toFloats();
        float[] ref = new float[rows * pick.length];
        for (int r = 0; r < rows; r++) for (int j = 0; j < pick.length; j++) ref[r * pick.length + j] = x[r * cols + pick[j]];
        assertArrayEquals(ref, got);
        assertArrayEquals(new long[] {rows, pick.length}, BE.selectColumns(tensor(x, rows, cols), pick).shape());
    }

    @Test
    void gatherRows() {
        Random rnd = new Random(3);
        int height = 9, width = 4;
        float[] table = random(rnd, height * width);
        int[] ids = {8, 0, 0, 5, 2, 8};
        Tensor got = BE.gatherRows(tensor(table, height, width), ids);
        assertArrayEquals(new long[] {ids.length, width}, got.shape());
        float[] ref = new float[ids.length * width];
        for (int i = 0; i < ids.length; i++) System.arraycopy(table, ids[i] * width, ref, i * width, width);
        assertArrayEquals(ref, got.toFloats());
        assertThrows(IndexOutOfBoundsException.class, () -> BE.gatherRows(tensor(table, height, width), new int[] {9}));
        assertThrows(IndexOutOfBoundsException.class, () -> BE.gatherRows(tensor(table, height, width), new int[] {-1}));
    }

    @Test
    void concatColumns() {
        Random rnd = new Random(4);
        float[] a = random(rnd, 6), b = random(rnd, 9);
        float[] got = BE.concatColumns(tensor(a, 3, 2), tensor(b, 3, 3)).toFloats();
        float[] ref = new float[15];
        for (int r = 0; r < 3; r++) {
            System.arraycopy(a, r * 2, ref, r * 5, 2);
            System.arraycopy(b, r * 3, ref, r * 5 + 2, 3);
        }
        assertArrayEquals(ref, got);
    }

    // ---- matrix products -------------------------------------------------------------------------

    @Test
    void matmulWithEveryTransposeFlag() {
        Random rnd = new Random(5);
        // including the vector-like edge shapes a single token or a single output produces
        int[][] shapes = {{5, 7, 3}, {1, 7, 3}, {5, 7, 1}, {5, 1, 3}, {1, 1, 1}, {1, 9, 1}};
        for (int[] sh : shapes) {
            int m = sh[0], k = sh[1], n = sh[2];
            float[] a = random(rnd, m * k), b = random(rnd, k * n);
            double[] ref = mm(a, b, m, k, n);
            float[] aT = transpose(a, m, k), bT = transpose(b, k, n);
            for (boolean ta : new boolean[] {false, true}) {
                for (boolean tb : new boolean[] {false, true}) {
                    Tensor x = ta ? tensor(aT, k, m) : tensor(a, m, k);
                    Tensor y = tb ? tensor(bT, n, k) : tensor(b, k, n);
                    Tensor c = BE.matmul(x, y, ta, tb);
                    String what = "matmul " + m + "x" + k + "x" + n + " ta=" + ta + " tb=" + tb;
                    assertArrayEquals(new long[] {m, n}, c.shape(), what);
                    close(ref, c.toFloats(), 1e-5, what);
                }
            }
        }
        // a view (rows of a bigger matrix) as input
        int m = 5, k = 7, n = 3;
        float[] b = random(rnd, k * n);
        Tensor big = tensor(random(rnd, 10 * k), 10, k);
        float[] part = BE.rows(big, 2, 2 + m).toFloats();
        close(mm(part, b, m, k, n), BE.matmul(BE.rows(big, 2, 2 + m), tensor(b, k, n), false, false).toFloats(),
                1e-5, "matmul of a row slice");
    }

    @Test
    void batchMatmulWithEveryTransposeFlag() {
        Random rnd = new Random(6);
        int[][] shapes = {{3, 4, 6, 5}, {1, 1, 6, 5}, {2, 1, 4, 1}, {4, 3, 1, 2}};
        for (int[] sh : shapes) {
        int batch = sh[0], m = sh[1], k = sh[2], n = sh[3];
        float[] a = random(rnd, batch * m * k), b = random(rnd, batch * k * n);
        for (boolean ta : new boolean[] {false, true}) {
            for (boolean tb : new boolean[] {false, true}) {
                float[] as = new float[a.length], bs = new float[b.length];
                double[] ref = new double[batch * m * n];
                for (int i = 0; i < batch; i++) {
                    float[] ai = java.util.Arrays.copyOfRange(a, i * m * k, (i + 1) * m * k);
                    float[] bi = java.util.Arrays.copyOfRange(b, i * k * n, (i + 1) * k * n);
                    System.arraycopy(mm(ai, bi, m, k, n), 0, ref, i * m * n, m * n);
                    System.arraycopy(ta ? transpose(ai, m, k) : ai, 0, as, i * m * k, m * k);
                    System.arraycopy(tb ? transpose(bi, k, n) : bi, 0, bs, i * k * n, k * n);
                }
                Tensor x = ta ? tensor(as, batch, k, m) : tensor(as, batch, m, k);
                Tensor y = tb ? tensor(bs, batch, n, k) : tensor(bs, batch, k, n);
                Tensor c = BE.batchMatmul(x, y, ta, tb);
                assertArrayEquals(new long[] {batch, m, n}, c.shape(), Arrays.toString(sh) + " ta=" + ta + " tb=" + tb);
                close(ref, c.toFloats(), 1e-5, "batchMatmul " + Arrays.toString(sh) + " ta=" + ta + " tb=" + tb);
            }
        }
        }
    }

    // ---- element-wise ----------------------------------------------------------------------------

    @Test
    void elementWiseArithmetic() {
        Random rnd = new Random(7);
        float[] a = random(rnd, 12), b = random(rnd, 12), row = random(rnd, 4);
        float[] add = new float[12], sub = new float[12], mul = new float[12], sc = new float[12],
                addRow = new float[12], mulRow = new float[12];
        for (int i = 0; i < 12; i++) {
            add[i] = a[i] + b[i];
            sub[i] = a[i] - b[i];
            mul[i] = a[i] * b[i];
            sc[i] = a[i] * 1.75f;
            addRow[i] = a[i] + row[i % 4];
            mulRow[i] = a[i] * row[i % 4];
        }
        Tensor ta = tensor(a, 3, 4), tb = tensor(b, 3, 4), tr = tensor(row, 4);
        assertArrayEquals(add, BE.add(ta, tb).toFloats());
        assertArrayEquals(sub, BE.sub(ta, tb).toFloats());
        assertArrayEquals(mul, BE.mul(ta, tb).toFloats());
        assertArrayEquals(sc, BE.scale(ta, 1.75f).toFloats());
        assertArrayEquals(addRow, BE.addRowVector(ta, tr).toFloats());
        assertArrayEquals(mulRow, BE.mulRowVector(ta, tr).toFloats());
        assertThrows(IllegalArgumentException.class, () -> BE.add(ta, tensor(b, 4, 3)));
        assertArrayEquals(a, ta.toFloats(), "inputs stay untouched");
    }

    /** erf in float64 to ~1e-15: 2/√π·e^(−x²)·Σ 2ⁿx^(2n+1)/(1·3·…·(2n+1)) (all terms positive, no cancellation). */
    static double erf(double x) {
        double ax = Math.abs(x);
        if (ax > 6) return Math.signum(x);
        double term = ax, sum = ax;
        for (int n = 1; n < 500; n++) {
            term *= 2 * ax * ax / (2 * n + 1);
            sum += term;
            if (term < 1e-17 * sum) break;
        }
        return Math.signum(x) * 2 / Math.sqrt(Math.PI) * Math.exp(-ax * ax) * sum;
    }

    @Test
    void referenceErfIsAccurate() {
        // known values of erf
        assertEquals(0.0, erf(0), 0);
        assertEquals(0.5204998778130465, erf(0.5), 1e-15);
        assertEquals(0.8427007929497149, erf(1), 1e-15);
        assertEquals(-0.9953222650189527, erf(-2), 1e-15);
        assertEquals(0.9999779095030014, erf(3), 1e-15);
    }

    @Test
    void activationsMatchTheirDefinitions() {
        Random rnd = new Random(8);
        int n = 4000;
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) ((rnd.nextDouble() * 2 - 1) * 8);
        float[] fixed = {0f, -0f, 0.5f, -0.5f, 1f, -1f, 3f, -3f, 1e-3f, -1e-3f, 10f, -10f};
        System.arraycopy(fixed, 0, x, 0, fixed.length);
        Tensor t = tensor(x, 40, 100);
        double[] relu = new double[n], silu = new double[n], gelu = new double[n], geluTanh = new double[n];
        for (int i = 0; i < n; i++) {
            double v = x[i];
            relu[i] = Math.max(0, v);
            silu[i] = v / (1 + Math.exp(-v));
            gelu[i] = v * 0.5 * (1 + erf(v / Math.sqrt(2)));
            geluTanh[i] = 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
        }
        close(relu, BE.activate(t, Activation.RELU).toFloats(), 0, "relu");
        close(silu, BE.activate(t, Activation.SILU).toFloats(), 1e-6, "silu");
        close(gelu, BE.activate(t, Activation.GELU).toFloats(), 1e-6, "gelu");
        close(geluTanh, BE.activate(t, Activation.GELU_TANH).toFloats(), 1e-6, "gelu_tanh");
        assertArrayEquals(new long[] {40, 100}, BE.activate(t, Activation.GELU).shape());
    }

    // ---- reductions ------------------------------------------------------------------------------

    @Test
    void reductions() {
        Random rnd = new Random(9);
        int rows = 6, cols = 11;
        float[] x = random(rnd, rows * cols);
        for (int i = 0; i < cols; i++) x[i] *= 30; // a row with large logits
        Tensor t = tensor(x, rows, cols);
        double s = 0, ss = 0;
        for (float v : x) {
            s += v;
            ss += (double) v * v;
        }
        assertEquals(s, BE.sum(t), 1e-9);
        assertEquals(ss, BE.sumOfSquares(t), 1e-9);
        double[] lse = BE.rowLogSumExp(t);
        int[] cols4 = new int[rows];
        float[] absMax = BE.rowAbsMax(t).toFloats();
        for (int r = 0; r < rows; r++) {
            double m = Double.NEGATIVE_INFINITY, am = 0;
            for (int j = 0; j < cols; j++) {
                m = Math.max(m, x[r * cols + j]);
                am = Math.max(am, Math.abs(x[r * cols + j]));
            }
            double e = 0;
            for (int j = 0; j < cols; j++) e += Math.exp(x[r * cols + j] - m);
            assertEquals(m + Math.log(e), lse[r], 1e-5 * Math.max(1, Math.abs(lse[r])), "row " + r);
            assertEquals((float) am, absMax[r], "absmax row " + r);
            cols4[r] = (r * 3) % cols;
        }
        float[] picked = BE.pickPerRow(t, cols4);
        for (int r = 0; r < rows; r++) assertEquals(x[r * cols + cols4[r]], picked[r]);
        // the same on tensors made inside a scratch scope (workspace memory)
        float[] pickedInScratch = BE.scratchValue(() -> {
            BE.add(tensor(x, rows, cols), tensor(x, rows, cols)); // something allocated before
            Tensor scaled = BE.scale(tensor(x, rows, cols), 2f);
            return BE.pickPerRow(scaled, cols4);
        });
        for (int r = 0; r < rows; r++) assertEquals(2 * x[r * cols + cols4[r]], pickedInScratch[r]);
    }

    // ---- norms -----------------------------------------------------------------------------------

    @Test
    void rmsNorm() {
        Random rnd = new Random(10);
        int rows = 7, cols = 64;
        float eps = 1e-5f;
        float[] x = random(rnd, rows * cols), w = random(rnd, cols);
        for (int i = 0; i < cols; i++) x[2 * cols + i] *= 1e-3f; // a row where eps matters
        double[] ref = new double[x.length];
        for (int r = 0; r < rows; r++) {
            double ms = 0;
            for (int i = 0; i < cols; i++) ms += (double) x[r * cols + i] * x[r * cols + i];
            ms /= cols;
            double inv = 1 / Math.sqrt(ms + eps);
            for (int i = 0; i < cols; i++) ref[r * cols + i] = w[i] * x[r * cols + i] * inv;
        }
        Tensor out = BE.rmsNorm(tensor(x, rows, cols), tensor(w, cols), eps);
        assertArrayEquals(new long[] {rows, cols}, out.shape());
        close(ref, out.toFloats(), 1e-5, "rmsNorm");
        // rank 3 normalizes over the last dimension too
        close(ref, BE.rmsNorm(tensor(x, 1, rows, cols), tensor(w, cols), eps).toFloats(), 1e-5, "rmsNorm 3-D");
    }

    @Test
    void layerNorm() {
        Random rnd = new Random(11);
        int rows = 6, cols = 48;
        float eps = 1e-5f;
        float[] x = random(rnd, rows * cols), w = random(rnd, cols), b = random(rnd, cols);
        for (int i = 0; i < x.length; i++) x[i] = x[i] * 3 + 5; // a mean far from 0
        double[] ref = new double[x.length], refNoBias = new double[x.length];
        for (int r = 0; r < rows; r++) {
            double mean = 0, var = 0;
            for (int i = 0; i < cols; i++) mean += x[r * cols + i];
            mean /= cols;
            for (int i = 0; i < cols; i++) var += Math.pow(x[r * cols + i] - mean, 2);
            var /= cols;
            for (int i = 0; i < cols; i++) {
                double norm = (x[r * cols + i] - mean) / Math.sqrt(var + eps);
                refNoBias[r * cols + i] = norm * w[i];
                ref[r * cols + i] = norm * w[i] + b[i];
            }
        }
        close(ref, BE.layerNorm(tensor(x, rows, cols), tensor(w, cols), tensor(b, cols), eps).toFloats(), 1e-5, "layerNorm");
        close(refNoBias, BE.layerNorm(tensor(x, rows, cols), tensor(w, cols), null, eps).toFloats(), 1e-5,
                "layerNorm without bias");
    }

    // ---- attention layout ------------------------------------------------------------------------

    @Test
    void splitAndMergeHeads() {
        Random rnd = new Random(12);
        int batch = 2, seq = 3, heads = 4, d = 5;
        float[] x = random(rnd, batch * seq * heads * d);
        Tensor split = BE.splitHeads(tensor(x, (long) batch * seq, (long) heads * d), batch, seq, heads, d);
        assertArrayEquals(new long[] {batch * heads, seq, d}, split.shape());
        float[] s = split.toFloats();
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int p = 0; p < seq; p++)
                    for (int i = 0; i < d; i++)
                        assertEquals(x[(b * seq + p) * heads * d + h * d + i], s[((b * heads + h) * seq + p) * d + i]);
        Tensor merged = BE.mergeHeads(split, batch, seq, heads, d);
        assertArrayEquals(new long[] {batch * seq, heads * d}, merged.shape());
        assertArrayEquals(x, merged.toFloats());
    }

    @Test
    void repeatHeads() {
        Random rnd = new Random(13);
        int batch = 2, kv = 3, groups = 4, seq = 5, d = 2;
        float[] x = random(rnd, batch * kv * seq * d);
        Tensor rep = BE.repeatHeads(tensor(x, (long) batch * kv, seq, d), batch, kv, groups);
        assertArrayEquals(new long[] {batch * kv * groups, seq, d}, rep.shape());
        float[] r = rep.toFloats();
        int per = seq * d;
        for (int b = 0; b < batch; b++)
            for (int q = 0; q < kv * groups; q++) // query head q reads kv head q / groups (transformers' repeat_kv)
                for (int i = 0; i < per; i++)
                    assertEquals(x[(b * kv + q / groups) * per + i], r[(b * kv * groups + q) * per + i]);
        assertArrayEquals(x, BE.repeatHeads(tensor(x, (long) batch * kv, seq, d), batch, kv, 1).toFloats());
    }

    private static float[] invFreq(int rotaryDim, double theta) {
        float[] inv = new float[rotaryDim / 2];
        for (int i = 0; i < inv.length; i++) inv[i] = (float) (1 / Math.pow(theta, 2.0 * i / rotaryDim));
        return inv;
    }

    @Test
    void ropeRotatesHalves() {
        Random rnd = new Random(14);
        int n = 3, seq = 37, d = 16;
        for (int rotary : new int[] {16, 8}) { // full and partial rotary
            float[] inv = invFreq(rotary, 10000);
            float[] x = random(rnd, n * seq * d);
            float[] got = BE.rope(tensor(x, n, seq, d), inv).toFloats();
            int half = rotary / 2;
            double[] ref = new double[x.length];
            for (int h = 0; h < n; h++) {
                for (int p = 0; p < seq; p++) {
                    int off = (h * seq + p) * d;
                    for (int i = 0; i < d; i++) ref[off + i] = x[off + i];
                    for (int i = 0; i < half; i++) {
                        double angle = (float) p * inv[i]; // float32 angle, as the interface says
                        double x1 = x[off + i], x2 = x[off + half + i];
                        // rotate_half: x·cos + [−x2, x1]·sin
                        ref[off + i] = x1 * Math.cos(angle) - x2 * Math.sin(angle);
                        ref[off + half + i] = x2 * Math.cos(angle) + x1 * Math.sin(angle);
                    }
                }
            }
            close(ref, got, 2e-6, "rope rotary=" + rotary);
            for (int h = 0; h < n; h++) { // position 0 is not rotated at all
                for (int i = 0; i < d; i++) assertEquals(x[h * seq * d + i], got[h * seq * d + i], "pos 0");
                for (int p = 0; p < seq; p++) // rotation keeps each pair's length
                    for (int i = 0; i < half; i++) {
                        int off = (h * seq + p) * d;
                        double before = Math.hypot(x[off + i], x[off + half + i]);
                        double after = Math.hypot(got[off + i], got[off + half + i]);
                        assertEquals(before, after, 1e-5 * Math.max(1, before));
                    }
            }
        }
    }

    @Test
    void causalSoftmax() {
        Random rnd = new Random(15);
        int n = 3, seq = 9;
        float scale = 0.35f;
        float[] s = random(rnd, n * seq * seq);
        for (int i = 0; i < s.length; i++) s[i] *= 4;
        s[5] = 1e4f; // a huge masked score must not leak
        float[] got = BE.causalSoftmax(tensor(s, n, seq, seq), scale).toFloats();
        double[] ref = new double[s.length];
        for (int h = 0; h < n; h++) {
            for (int i = 0; i < seq; i++) {
                int off = (h * seq + i) * seq;
                double m = Double.NEGATIVE_INFINITY;
                for (int j = 0; j <= i; j++) m = Math.max(m, (double) s[off + j] * scale);
                double z = 0;
                for (int j = 0; j <= i; j++) z += Math.exp((double) s[off + j] * scale - m);
                for (int j = 0; j <= i; j++) ref[off + j] = Math.exp((double) s[off + j] * scale - m) / z;
                double rowSum = 0;
                for (int j = 0; j < seq; j++) {
                    rowSum += got[off + j];
                    if (j > i) assertEquals(0f, got[off + j], "masked entry " + h + "," + i + "," + j);
                }
                assertEquals(1.0, rowSum, 1e-5, "row sum");
                if (i == 0) assertEquals(1f, got[off], 1e-7f, "first row attends only to itself");
            }
        }
        close(ref, got, 1e-6, "causalSoftmax");
        Tensor in = tensor(s, n, seq, seq);
        BE.causalSoftmax(in, scale);
        assertArrayEquals(s, in.toFloats(), "input untouched");

        // a sequence length first seen inside a scratch scope: its cached mask must survive the scope
        int seq2 = 13;
        float[] s2 = random(rnd, seq2 * seq2);
        float[] inScratch = BE.scratchValue(() -> BE.causalSoftmax(tensor(s2, 1, seq2, seq2), 1f).toFloats());
        BE.scratchValue(() -> BE.add(tensor(random(rnd, 4096), 4096), tensor(random(rnd, 4096), 4096)).toFloats());
        float[] after = BE.causalSoftmax(tensor(s2, 1, seq2, seq2), 1f).toFloats();
        assertArrayEquals(inScratch, after);
        for (int i = 0; i < seq2; i++) for (int j = i + 1; j < seq2; j++) assertEquals(0f, after[i * seq2 + j]);
        assertThrows(IllegalArgumentException.class, () -> BE.causalSoftmax(tensor(new float[6], 1, 2, 3), 1f));
    }

    // ---- linear algebra --------------------------------------------------------------------------

    private static float[] spd(Random rnd, int n) {
        float[] a = random(rnd, n * n);
        double[] g = mm(a, transpose(a, n, n), n, n, n);
        for (int i = 0; i < n; i++) g[i * n + i] += n;
        return toFloat(g);
    }

    @Test
    void choleskyIsLowerAndReconstructs() {
        Random rnd = new Random(16);
        for (int n : new int[] {1, 2, 6, 33}) {
            float[] a = spd(rnd, n);
            Tensor l = BE.cholesky(tensor(a, n, n));
            assertArrayEquals(new long[] {n, n}, l.shape());
            float[] lv = l.toFloats();
            for (int i = 0; i < n; i++) {
                assertTrue(lv[i * n + i] > 0, "positive diagonal");
                for (int j = i + 1; j < n; j++) assertEquals(0f, lv[i * n + j], "upper triangle must be 0 at " + i + "," + j);
            }
            close(toFloat(mm(lv, transpose(lv, n, n), n, n, n)), a, 1e-5 * n, "L·Lᵀ n=" + n);
            // the reference Cholesky–Banachiewicz factor in float64
            double[] ref = new double[n * n];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j <= i; j++) {
                    double sum = a[i * n + j];
                    for (int k = 0; k < j; k++) sum -= ref[i * n + k] * ref[j * n + k];
                    ref[i * n + j] = i == j ? Math.sqrt(sum) : sum / ref[j * n + j];
                }
            }
            close(ref, lv, 1e-4, "L n=" + n);
            assertArrayEquals(a, tensor(a, n, n).toFloats());
        }
    }

    @Test
    void choleskyOfANonPositiveDefiniteMatrixThrowsArithmeticException() {
        // GptqQuantizer reports a non-positive-definite Hessian as an ArithmeticException
        float[][] bad = {{1, 2, 2, 1}, {-1, 0, 0, -1}, {1, 0, 0, 0}};
        for (float[] m : bad) {
            ArithmeticException e = assertThrows(ArithmeticException.class, () -> BE.cholesky(tensor(m, 2, 2)));
            assertTrue(e.getMessage().contains("not positive definite"), e.getMessage());
        }
    }

    @Test
    void choleskyLeavesItsInputUntouched() {
        // the input stays untouched, so the same tensor can be factored twice
        Random rnd = new Random(17);
        int n = 5;
        Tensor a = tensor(spd(rnd, n), n, n);
        float[] before = a.toFloats();
        float[] l1 = BE.cholesky(a).toFloats();
        assertArrayEquals(before, a.toFloats());
        assertArrayEquals(l1, BE.cholesky(a).toFloats());
    }

    @Test
    void solveTriangularLowerAndUpper() {
        Random rnd = new Random(18);
        int n = 12, m = 4;
        for (boolean lower : new boolean[] {true, false}) {
            float[] t = new float[n * n];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    boolean inside = lower ? j <= i : j >= i;
                    if (inside) t[i * n + j] = (float) rnd.nextGaussian() * 0.3f;
                }
                t[i * n + i] = (float) (1 + rnd.nextDouble()) * (rnd.nextBoolean() ? 1 : -1);
            }
            float[] b = random(rnd, n * m);
            Tensor x = BE.solveTriangular(tensor(t, n, n), tensor(b, n, m), lower);
            assertArrayEquals(new long[] {n, m}, x.shape());
            close(b, toFloat(mm(t, x.toFloats(), n, n, m)), 1e-5, "T·X, lower=" + lower);
        }
        // solving with a Cholesky factor: L·Lᵀ·X = B through two solves
        float[] a = spd(rnd, n), b = random(rnd, n * m);
        Tensor l = BE.cholesky(tensor(a, n, n));
        Tensor y = BE.solveTriangular(l, tensor(b, n, m), true);
        Tensor x = BE.solveTriangular(BE.transpose(l), y, false);
        close(b, toFloat(mm(a, x.toFloats(), n, n, m)), 1e-4, "A·X via Cholesky");
        assertThrows(IllegalArgumentException.class,
                () -> BE.solveTriangular(tensor(new float[9], 3, 3), tensor(new float[8], 4, 2), true));
    }

    @Test
    void svdReconstructsTallWideAndSquare() {
        Random rnd = new Random(19);
        int[][] shapes = {{9, 4}, {4, 9}, {6, 6}, {1, 5}, {5, 1}};
        for (int[] sh : shapes) {
            int rows = sh[0], cols = sh[1], k = Math.min(rows, cols);
            float[] a = random(rnd, rows * cols);
            Tensor[] usv = BE.svd(tensor(a, rows, cols));
            String what = "svd " + rows + "x" + cols;
            assertArrayEquals(new long[] {rows, k}, usv[0].shape(), what + " U");
            assertArrayEquals(new long[] {k}, usv[1].shape(), what + " S");
            assertArrayEquals(new long[] {cols, k}, usv[2].shape(), what + " V");
            float[] u = usv[0].toFloats(), s = usv[1].toFloats(), v = usv[2].toFloats();
            for (int i = 0; i < k; i++) {
                assertTrue(s[i] >= 0, what + " S >= 0");
                if (i > 0) assertTrue(s[i] <= s[i - 1], what + " S descending");
            }
            float[] us = new float[rows * k];
            for (int i = 0; i < rows; i++) for (int j = 0; j < k; j++) us[i * k + j] = u[i * k + j] * s[j];
            close(mm(us, transpose(v, cols, k), rows, k, cols), a, 1e-5, what + " U·S·Vᵀ");
            double[] eye = new double[k * k];
            for (int i = 0; i < k; i++) eye[i * k + i] = 1;
            close(eye, toFloat(mm(transpose(u, rows, k), u, k, rows, k)), 1e-5, what + " UᵀU");
            close(eye, toFloat(mm(transpose(v, cols, k), v, k, cols, k)), 1e-5, what + " VᵀV");
            // the squared singular values are the eigenvalues of AᵀA: their sum is the Frobenius norm²
            double fro = 0, s2 = 0;
            for (float x : a) fro += (double) x * x;
            for (float x : s) s2 += (double) x * x;
            assertEquals(fro, s2, 1e-4 * fro, what + " Σs² = ‖A‖²");
        }
    }

    // ---- fake quantization through the backend ---------------------------------------------------

    @Test
    void fakeQuantizationKeepsShapes() {
        Random rnd = new Random(20);
        float[] w = random(rnd, 4 * 8);
        Tensor q = BE.fakeQuantizeWeight(tensor(w, 4, 8), new io.blockquant.quant.IntQuantSpec(4, 4, false));
        assertArrayEquals(new long[] {4, 8}, q.shape());
        float[] ref = w.clone();
        io.blockquant.quant.IntQuantizer.fakeQuantizeWeight(ref, 4, 8, new io.blockquant.quant.IntQuantSpec(4, 4, false));
        assertArrayEquals(ref, q.toFloats());
        float[] x = random(rnd, 2 * 3 * 8);
        Tensor tq = BE.fakeQuantizeTokens(tensor(x, 2, 3, 8), 8);
        assertArrayEquals(new long[] {2, 3, 8}, tq.shape());
        float[] tref = x.clone();
        io.blockquant.quant.IntQuantizer.fakeQuantizeTokens(tref, 6, 8, 8);
        assertArrayEquals(tref, tq.toFloats());
    }

    @Test
    void scratchResultsOutliveTheScope() {
        Random rnd = new Random(21);
        float[] a = random(rnd, 16), b = random(rnd, 16);
        Tensor kept = BE.scratch(() -> {
            Tensor tmp = BE.add(tensor(a, 4, 4), tensor(b, 4, 4));
            return BE.matmul(tmp, tmp, false, true);
        });
        float[] sum = new float[16];
        for (int i = 0; i < 16; i++) sum[i] = a[i] + b[i];
        // fill fresh scratch memory, then check the kept result is intact
        BE.scratch(() -> BE.add(tensor(new float[16], 4, 4), tensor(new float[16], 4, 4)));
        close(mm(sum, transpose(sum, 4, 4), 4, 4, 4), kept.toFloats(), 1e-5, "scratch result");
    }

    @Test
    void toBytesWritesTheElementsRangeAsLittleEndianFloat32() {
        float[] v = random(new Random(7), 6 * 5);
        Tensor t = tensor(v, 6, 5);
        Tensor view = BE.transpose(t); // a non-contiguous tensor is read in its own row-major order
        float[] viewValues = BE.toFloats(view);
        for (Tensor x : new Tensor[] {t, view}) {
            float[] expected = BE.toFloats(x);
            java.nio.ByteBuffer dst = java.nio.ByteBuffer.allocate(3 + 4 * 7).order(java.nio.ByteOrder.BIG_ENDIAN);
            dst.position(3);
            BE.toBytes(x, 11, dst);
            assertEquals(3 + 4 * 7, dst.position(), "position advanced past the values");
            java.nio.ByteBuffer le = java.nio.ByteBuffer.wrap(dst.array()).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < 7; i++) assertEquals(Float.floatToRawIntBits(expected[11 + i]), Float.floatToRawIntBits(le.getFloat(3 + 4 * i)), "element " + (11 + i));
        }
        assertEquals(v[5], viewValues[1], "the transpose's second element is the original's (1, 0)");
        assertThrows(IndexOutOfBoundsException.class, () -> BE.toBytes(t, 28, java.nio.ByteBuffer.allocate(12)));
    }
}
