package io.blockquant.algo;

import io.blockquant.quant.FpFormat;
import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.FpQuantizer;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.IntQuantizer;
import io.blockquant.quant.ScaleConstraint;
import io.blockquant.tensor.ForwardOps;
import io.blockquant.tensor.GramSum;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.Arrays;
import java.util.stream.IntStream;

/**
 * GPTQ (Frantar et al., 2022, Algorithm 1) for one linear layer, following the reference implementation
 * (IST-DASLab/gptq, {@code GPTQ.fasterquant}): columns are quantized one at a time and each column's error
 * is spread over the columns not yet quantized through the upper Cholesky factor of H⁻¹; updates inside a
 * block of {@code blockSize} columns are applied eagerly, to the rest lazily, once per block.
 *
 * <p>One column loop serves two grids: integer levels ({@link #quantize}) and floating-point codes
 * ({@link #quantizeFp}, ZeroQuant-FP).
 */
public final class GptqQuantizer {

    private GptqQuantizer() {}

    public static QuantizedLinear quantize(Tensor weight, double[] hessian, GptqConfig cfg) {
        return quantize(weight, PreparedHessian.of(weight.backend(), hessian, cfg), cfg);
    }

    /** As above, with the Hessian's factor already computed (shared by the layers of a true-sequential group). */
    public static QuantizedLinear quantize(Tensor weight, PreparedHessian hessian, GptqConfig cfg) {
        QuantizedLayer q = quantizeLayer(weight, hessian, cfg);
        q.weight().close();
        return (QuantizedLinear) q.stored();
    }

    /**
     * As {@link #quantize}, with the dequantized weight as a tensor of the weight's backend: where the backend ran the
     * column loop itself, the loop's own output (it leaves each quantized column's value in W), else uploaded.
     */
    public static QuantizedLayer quantizeLayer(Tensor weight, PreparedHessian hessian, GptqConfig cfg) {
        IntQuantSpec spec = cfg.quant();
        int maxq = spec.maxLevel();
        GridMaker intGrid = (x, from, to, row) -> {
            IntQuantizer.Params p = IntQuantizer.params(x, from, to, spec.bits(), spec.symmetric());
            return new RowGrid() {
                public int code(float w) { return IntQuantizer.level(w, p, maxq); }
                public float value(int level) { return p.scale() * (level - p.zero()); }
                public float scale() { return p.scale(); }
                public float zero() { return p.zero(); }
            };
        };
        Rounded q = onBackend(weight, prepared(weight, hessian), cfg, spec);
        if (q == null) {
            q = run(weight, weight.toFloats(), prepared(weight, hessian), cfg, spec.perChannel() ? 0 : spec.groupSize(), intGrid);
        }
        QuantizedLinear stored = new QuantizedLinear(q.rows, q.cols, spec, q.groups, q.codes, q.scales, q.zeros, q.gIdx, q.loss);
        return q.dequantized != null ? new QuantizedLayer(stored, q.dequantized) : QuantizedLayer.of(stored, weight);
    }

    /**
     * GPTQ onto a floating-point grid (ZeroQuant-FP, section 3: "we use GPTQ" with FP4/FP8 weights): the same
     * column loop as {@link #quantize} — lazy batches, groups, act-order, static groups, damping from
     * {@code cfg} ({@code cfg.quant()} is not read) — with each column rounded to the nearest value of
     * {@code spec.format()} under a symmetric absmax scale constrained by {@code spec.constraint()}
     * ({@link ScaleConstraint}). Per-channel scales, and M2's channel scales, come from the weight before dead
     * columns are zeroed, like the INT path's per-channel parameters; group scales come from the weight as
     * the loop has updated it when the group starts.
     */
    public static FpQuantizedLinear quantizeFp(Tensor weight, double[] hessian, GptqConfig cfg, FpQuantSpec spec) {
        return quantizeFp(weight, PreparedHessian.of(weight.backend(), hessian, cfg), cfg, spec);
    }

    /** As above, with the Hessian's factor already computed. */
    public static FpQuantizedLinear quantizeFp(Tensor weight, PreparedHessian hessian, GptqConfig cfg, FpQuantSpec spec) {
        float[] w = weight.toFloats();
        int rows = (int) weight.size(0), cols = (int) weight.size(1);
        float[] rowAbsMax = new float[rows];
        for (int r = 0; r < rows; r++) rowAbsMax[r] = FpQuantizer.absMax(w, r * cols, (r + 1) * cols);
        FpFormat format = spec.format();
        GridMaker fpGrid = (x, from, to, row) -> {
            float scale = spec.constraint().scale(FpQuantizer.absMax(x, from, to), rowAbsMax[row], format);
            return new RowGrid() {
                public int code(float v) { return format.encode(v / scale); }
                public float value(int code) { return format.decode(code) * scale; }
                public float scale() { return scale; }
                public float zero() { return 0f; }
            };
        };
        Rounded q = run(weight, w, prepared(weight, hessian), cfg, spec.perChannel() ? 0 : spec.groupSize(),
                fpGrid);
        byte[] codes = new byte[q.codes.length];
        for (int i = 0; i < codes.length; i++) codes[i] = (byte) q.codes[i];
        return new FpQuantizedLinear(q.rows, q.cols, spec, q.groups, codes, q.scales, q.gIdx, q.loss);
    }

    /** One (row, group)'s rounding rule inside the column loop: integer levels or FP codes. */
    private interface RowGrid {
        int code(float w);

        float value(int code);

        float scale();

        float zero();
    }

    /** The grid of one row's group, from that row's values {@code x[from, to)}. */
    @FunctionalInterface
    private interface GridMaker {
        RowGrid make(float[] x, int from, int to, int row);
    }

    /**
     * The column loop's output, codes in the original column order; {@code dequantized}: the quantized weight as a
     * tensor of the backend that ran the loop, when it ran there (else null).
     */
    private record Rounded(int rows, int cols, int groups, int[] codes, float[] scales, float[] zeros, int[] gIdx,
                           double loss, Tensor dequantized) {}

    /**
     * What GPTQ derives from a Hessian alone, so the layers that share one (q/k/v, gate/up) compute it once:
     * the dead columns (H_cc = 0), the act-order permutation, and the upper Cholesky factor of the damped,
     * permuted H⁻¹ (paper eq. 5 and its Cholesky reformulation). The factor stays where the backend computed it:
     * on a GPU it never crosses the bus unless it is serialized (a Spark task handing it to others) or read with
     * {@link #hinv()}.
     */
    public static final class PreparedHessian implements java.io.Serializable {
        private static final long serialVersionUID = 2L;

        private final int cols;
        private final boolean[] dead;
        private final int[] perm;
        private float[] hinv;
        private transient Tensor onBackend;

        private PreparedHessian(int cols, boolean[] dead, int[] perm, Tensor factor) {
            this.cols = cols;
            this.dead = dead;
            this.perm = perm;
            if (factor.backend().onDevice()) this.onBackend = factor;
            else this.hinv = factor.toFloats();
        }

        /** From a Hessian already scaled ({@code 2/n·Σ x·xᵀ}, row-major), left as it is. */
        public static PreparedHessian of(TensorBackend be, double[] hessian, GptqConfig cfg) {
            int cols = (int) Math.round(Math.sqrt(hessian.length));
            if ((long) cols * cols != hessian.length) {
                throw new IllegalArgumentException("Hessian of " + hessian.length + " entries is not square");
            }
            double[] diag = new double[cols];
            for (int c = 0; c < cols; c++) diag[c] = hessian[c * cols + c];
            return prepare(be, diag, cfg, (d, perm) -> be.fromFloats(HessianAccumulator.scaledWithDiagonal(hessian, cols, 1.0, d, perm), cols, cols));
        }

        /** From a running sum {@code Σ x·xᵀ} (scaled by 2/n here), which is spent. */
        public static PreparedHessian of(TensorBackend be, GramSum sum, GptqConfig cfg) {
            if (sum.rows() == 0) throw new IllegalStateException("no calibration token reached this layer");
            double f = 2.0 / sum.rows();
            double[] diag = sum.diagonal();
            for (int c = 0; c < diag.length; c++) diag[c] *= f;
            return prepare(be, diag, cfg, (d, perm) -> sum.scaledWithDiagonal(be, f, d, perm));
        }

        /**
         * {@code diag}: H's diagonal; {@code damped} gives {@code P·(H + diag(d))·Pᵀ} in float32 for a diagonal
         * {@code d} in the permuted order.
         */
        private static PreparedHessian prepare(TensorBackend be, double[] diag, GptqConfig cfg,
                                               java.util.function.BiFunction<double[], int[], Tensor> damped) {
            int cols = diag.length;
            // dead inputs (never non-zero in calibration): H_cc = 1 (their weights are zeroed by the loop)
            boolean[] dead = new boolean[cols];
            double[] h = diag.clone();
            for (int c = 0; c < cols; c++) {
                if (h[c] == 0) {
                    h[c] = 1;
                    dead[c] = true;
                }
            }
            // act-order: columns by decreasing H_cc (stable, like torch.argsort on distinct values)
            int[] perm = IntStream.range(0, cols).toArray();
            if (cfg.actOrder()) {
                perm = IntStream.range(0, cols).boxed().sorted((a, b) -> Double.compare(h[b], h[a]))
                        .mapToInt(Integer::intValue).toArray();
            }
            double mean = 0;
            for (int c = 0; c < cols; c++) mean += h[perm[c]];
            double damp = cfg.percDamp() * mean / cols;
            double[] d = new double[cols];
            for (int c = 0; c < cols; c++) d[c] = dead[perm[c]] ? 1 + damp : damp;
            Tensor hd = damped.apply(d, perm);
            try {
                return new PreparedHessian(cols, dead, perm, upperCholeskyOfInverse(be, hd));
            } finally {
                hd.close();
            }
        }

        public int cols() {
            return cols;
        }

        public boolean[] dead() {
            return dead;
        }

        public int[] perm() {
            return perm;
        }

        /** The upper factor U of the damped, permuted H⁻¹ on the heap, row-major {@code [cols, cols]}. */
        public float[] hinv() {
            if (hinv == null) {
                if (onBackend == null) throw new IllegalStateException("this Hessian's factor was released");
                hinv = onBackend.toFloats();
            }
            return hinv;
        }

        /** The factor as a tensor of {@code be} when it is there already, else null. */
        Tensor hinvOn(TensorBackend be) {
            return onBackend != null && onBackend.backend() == be ? onBackend : null;
        }

        /** Frees the factor's device memory now (its group's layers are done). */
        public void release() {
            if (onBackend != null) onBackend.close();
            onBackend = null;
        }

        private void writeObject(java.io.ObjectOutputStream out) throws java.io.IOException {
            hinv(); // a task that reads it elsewhere gets the factor on the heap
            out.defaultWriteObject();
        }
    }

    private static PreparedHessian prepared(Tensor weight, PreparedHessian h) {
        if (h.cols() != weight.size(1)) {
            throw new IllegalArgumentException("Hessian of " + (long) h.cols() * h.cols() + " entries for a weight " + weight.describe());
        }
        return h;
    }

    /** Algorithm 1 onto any grid; {@code groupSize <= 0} means one group per row. */
    private static Rounded run(Tensor weight, float[] w, PreparedHessian prepared, GptqConfig cfg, int groupSize,
                               GridMaker grid) {
        TensorBackend be = weight.backend();
        int rows = (int) weight.size(0), cols = (int) weight.size(1);
        boolean perChannel = groupSize <= 0;
        int group = perChannel ? cols : groupSize;
        if (cols % group != 0) {
            throw new IllegalArgumentException("group size " + group + " does not divide the input width " + cols);
        }
        int groups = cols / group;

        // per-channel parameters come from the weight before dead columns are zeroed, as in the reference
        RowGrid[] rowParams = perChannel ? rowParams(w, rows, cols, 0, cols, grid) : null;
        for (int c = 0; c < cols; c++) {
            if (prepared.dead()[c]) for (int r = 0; r < rows; r++) w[r * cols + c] = 0f;
        }
        RowGrid[][] staticParams = null;
        if (!perChannel && cfg.staticGroups()) {
            staticParams = new RowGrid[groups][];
            for (int g = 0; g < groups; g++) staticParams[g] = rowParams(w, rows, cols, g * group, (g + 1) * group, grid);
        }
        int[] perm = prepared.perm();
        if (!isIdentity(perm)) w = permuteColumns(w, rows, cols, perm);
        float[] hinv = prepared.hinv();

        int[] levelsPerm = new int[rows * cols];
        float[] scales = new float[rows * groups], zeros = new float[rows * groups];
        int[] groupOfPermCol = new int[cols];
        double loss = 0;
        RowGrid[] current = rowParams;
        int currentGroup = -1;
        float[] err = new float[rows * cfg.blockSize()];

        for (int i1 = 0; i1 < cols; i1 += cfg.blockSize()) {
            int i2 = Math.min(i1 + cfg.blockSize(), cols), count = i2 - i1;
            float[] atBlockStart = perChannel || staticParams != null ? null : w.clone();
            for (int i = 0; i < count; i++) {
                int c = i1 + i;
                int g; // which group this column belongs to
                if (perChannel) {
                    g = 0;
                } else if (staticParams != null) {
                    g = perm[c] / group;
                    current = staticParams[g];
                } else {
                    g = c / group;
                    if (g != currentGroup) {
                        // the reference reads the group's range from W as last updated at a block boundary
                        current = groupParams(w, atBlockStart, rows, cols, c, c + group, i2, grid);
                        currentGroup = g;
                    }
                }
                groupOfPermCol[c] = g;
                for (int r = 0; r < rows; r++) {
                    scales[r * groups + g] = current[r].scale();
                    zeros[r * groups + g] = current[r].zero();
                }
                float d = hinv[c * cols + c];
                for (int r = 0; r < rows; r++) {
                    float wv = w[r * cols + c];
                    int level = current[r].code(wv);
                    float q = current[r].value(level);
                    levelsPerm[r * cols + c] = level;
                    float e = (wv - q) / d;
                    loss += (double) (wv - q) * (wv - q) / ((double) d * d) / 2;
                    err[r * count + i] = e;
                    w[r * cols + c] = q;
                    // eager update of the rest of this block: W[:, c+1:i2] -= e · Hinv[c, c+1:i2]
                    int base = r * cols;
                    for (int j = c + 1; j < i2; j++) w[base + j] -= e * hinv[c * cols + j];
                }
            }
            if (i2 < cols) lazyUpdate(be, w, rows, cols, err, count, hinv, i1, i2);
        }

        return unpermuted(rows, cols, groups, perm, levelsPerm, groupOfPermCol, scales, zeros, loss);
    }

    /**
     * The integer column loop where the weight's backend runs one of its own ({@link
     * io.blockquant.tensor.LinearAlgebra#gptqIntColumns}: the CUDA backend's), for groups found as the loop reaches
     * them; null for per-channel or static groups, and on backends without one.
     */
    private static Rounded onBackend(Tensor weight, PreparedHessian prepared, GptqConfig cfg, IntQuantSpec spec) {
        if (spec.perChannel() || cfg.staticGroups()) return null;
        TensorBackend be = weight.backend();
        int rows = (int) weight.size(0), cols = (int) weight.size(1), group = spec.groupSize();
        if (cols % group != 0) return null; // the Java loop says why
        int[] perm = prepared.perm();
        int groups = cols / group;
        int[] levelsPerm = new int[rows * cols];
        float[] scales = new float[rows * groups], zeros = new float[rows * groups];
        Double loss;
        Tensor factor = prepared.hinvOn(be);
        if (factor != null) {
            // W and the factor stay on the device: dead columns zeroed and act-order applied there, on a copy the loop overwrites
            float[] alive = new float[cols];
            for (int c = 0; c < cols; c++) alive[c] = prepared.dead()[c] ? 0f : 1f;
            Tensor mask = be.fromFloats(alive, cols);
            Tensor w = be.mulRowVector(weight, mask);
            mask.close();
            if (!isIdentity(perm)) {
                Tensor permuted = be.selectColumns(w, perm);
                w.close();
                w = permuted;
            }
            loss = be.gptqIntColumns(w, factor, cfg.blockSize(), group, spec.bits(), spec.symmetric(), levelsPerm, scales, zeros);
            if (loss != null) {
                // W now holds each column's quantized value: the dequantized weight, in the loop's column order
                Tensor dequantized = w;
                if (!isIdentity(perm)) {
                    dequantized = be.selectColumns(w, inverse(perm));
                    w.close();
                }
                int[] groupOfPermCol = new int[cols];
                for (int c = 0; c < cols; c++) groupOfPermCol[c] = c / group;
                Rounded r = unpermuted(rows, cols, groups, perm, levelsPerm, groupOfPermCol, scales, zeros, loss);
                return new Rounded(r.rows, r.cols, r.groups, r.codes, r.scales, r.zeros, r.gIdx, r.loss, dequantized);
            }
            w.close();
        } else {
            float[] w = weight.toFloats();
            for (int c = 0; c < cols; c++) {
                if (prepared.dead()[c]) for (int r = 0; r < rows; r++) w[r * cols + c] = 0f;
            }
            if (!isIdentity(perm)) w = permuteColumns(w, rows, cols, perm);
            loss = be.gptqIntColumns(w, rows, cols, prepared.hinv(), cfg.blockSize(), group, spec.bits(), spec.symmetric(),
                    levelsPerm, scales, zeros);
        }
        if (loss == null) return null;
        int[] groupOfPermCol = new int[cols];
        for (int c = 0; c < cols; c++) groupOfPermCol[c] = c / group;
        return unpermuted(rows, cols, groups, perm, levelsPerm, groupOfPermCol, scales, zeros, loss);
    }

    /** The loop's output back in the original column order. */
    private static Rounded unpermuted(int rows, int cols, int groups, int[] perm, int[] levelsPerm, int[] groupOfPermCol,
                                      float[] scales, float[] zeros, double loss) {
        int[] gIdx = new int[cols];
        if (isIdentity(perm)) {
            // the loop's order is the original one: nothing to move (a Llama-3-8B down_proj holds 58.7 M levels)
            for (int c = 0; c < cols; c++) gIdx[c] = groupOfPermCol[c];
            return new Rounded(rows, cols, groups, levelsPerm, scales, zeros, gIdx, loss, null);
        }
        int[] levels = new int[rows * cols];
        for (int j = 0; j < cols; j++) {
            int c = perm[j];
            gIdx[c] = groupOfPermCol[j];
            for (int r = 0; r < rows; r++) levels[r * cols + c] = levelsPerm[r * cols + j];
        }
        return new Rounded(rows, cols, groups, levels, scales, zeros, gIdx, loss, null);
    }

    /** {@code W[:, i2:] -= Err · Hinv[i1:i2, i2:]} as one backend matrix product. */
    private static void lazyUpdate(ForwardOps be, float[] w, int rows, int cols, float[] err, int count,
                                   float[] hinv, int i1, int i2) {
        int rest = cols - i2;
        float[] hBlock = new float[count * rest];
        for (int i = 0; i < count; i++) System.arraycopy(hinv, (i1 + i) * cols + i2, hBlock, i * rest, rest);
        float[] errBlock = Arrays.copyOf(err, rows * count);
        float[] delta = be.scratchValue(() -> be.matmul(be.fromFloats(errBlock, rows, count),
                be.fromFloats(hBlock, count, rest), false, false).toFloats());
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < rest; j++) w[r * cols + i2 + j] -= delta[r * rest + j];
        }
    }

    /**
     * Upper triangular U with {@code H⁻¹ = Uᵀ·U}, through the backend's Cholesky and triangular solve; the tensor
     * returned lives outside any scratch scope.
     */
    static float[] upperCholeskyOfInverse(TensorBackend be, double[] h, int n) {
        float[] hf = new float[n * n];
        for (int i = 0; i < hf.length; i++) hf[i] = (float) h[i];
        Tensor u = upperCholeskyOfInverse(be, be.fromFloats(hf, n, n));
        float[] out = u.toFloats();
        u.close();
        return out;
    }

    /** As above, on a float32 tensor of the backend. */
    static Tensor upperCholeskyOfInverse(TensorBackend be, Tensor h) {
        // exact float32 products: TF32's 10 mantissa bits would spoil H⁻¹
        Tensor u = be.exactFloat32(() -> be.scratch(() -> {
            Tensor l = be.cholesky(h);
            Tensor linv = be.invertTriangular(l, true);
            Tensor inv = be.matmul(linv, linv, true, false);          // H⁻¹ = L⁻ᵀ·L⁻¹
            return be.transpose(be.cholesky(inv));                   // upper factor
        }));
        if (!Double.isFinite(be.sum(u))) {
            u.close();
            throw new ArithmeticException("GPTQ: the damped Hessian is not positive definite; raise the damping");
        }
        return u;
    }

    /** Each row's grid over columns {@code [from, to)}. */
    private static RowGrid[] rowParams(float[] w, int rows, int cols, int from, int to, GridMaker grid) {
        RowGrid[] out = new RowGrid[rows];
        for (int r = 0; r < rows; r++) out[r] = grid.make(w, r * cols + from, r * cols + to, r);
        return out;
    }

    /**
     * A group's grids read the way the reference reads them: columns inside the current lazy block
     * (before {@code blockEnd}) as they were when the block started (its W is updated only at block ends),
     * later columns as they are now.
     */
    private static RowGrid[] groupParams(float[] w, float[] atBlockStart, int rows, int cols, int from,
                                         int to, int blockEnd, GridMaker grid) {
        RowGrid[] out = new RowGrid[rows];
        for (int r = 0; r < rows; r++) {
            float[] row = new float[to - from];
            for (int c = from; c < to; c++) row[c - from] = (c < blockEnd ? atBlockStart : w)[r * cols + c];
            out[r] = grid.make(row, 0, row.length, r);
        }
        return out;
    }

    private static int[] inverse(int[] perm) {
        int[] inv = new int[perm.length];
        for (int i = 0; i < perm.length; i++) inv[perm[i]] = i;
        return inv;
    }

    private static boolean isIdentity(int[] perm) {
        for (int i = 0; i < perm.length; i++) if (perm[i] != i) return false;
        return true;
    }

    private static float[] permuteColumns(float[] w, int rows, int cols, int[] perm) {
        float[] out = new float[w.length];
        for (int r = 0; r < rows; r++) for (int j = 0; j < cols; j++) out[r * cols + j] = w[r * cols + perm[j]];
        return out;
    }

    private static double[] permuteSymmetric(double[] h, int n, int[] perm) {
        double[] out = new double[h.length];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) out[i * n + j] = h[perm[i] * n + perm[j]];
        return out;
    }
}
