package io.blockquant.algo;

import io.blockquant.quant.FpFormat;
import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.FpQuantizer;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.IntQuantizer;
import io.blockquant.quant.ScaleConstraint;
import io.blockquant.tensor.ForwardOps;
import io.blockquant.tensor.LinearAlgebra;
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
        return new QuantizedLinear(q.rows, q.cols, spec, q.groups, q.codes, q.scales, q.zeros, q.gIdx, q.loss);
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

    /** The column loop's output, codes in the original column order. */
    private record Rounded(int rows, int cols, int groups, int[] codes, float[] scales, float[] zeros, int[] gIdx,
                           double loss) {}

    /**
     * What GPTQ derives from a Hessian alone, so the layers that share one (q/k/v, gate/up) compute it once:
     * the dead columns (H_cc = 0), the act-order permutation, and the upper Cholesky factor of the damped,
     * permuted H⁻¹ (paper eq. 5 and its Cholesky reformulation).
     */
    public record PreparedHessian(int cols, boolean[] dead, int[] perm, float[] hinv) implements java.io.Serializable {

        public static PreparedHessian of(TensorBackend be, double[] hessian, GptqConfig cfg) {
            return ofOwned(be, hessian.clone(), cfg);
        }

        /** As {@link #of}, damping {@code h} in place (no copy of an n×n float64 matrix at real widths). */
        public static PreparedHessian ofOwned(TensorBackend be, double[] h, GptqConfig cfg) {
            int cols = (int) Math.round(Math.sqrt(h.length));
            if ((long) cols * cols != h.length) {
                throw new IllegalArgumentException("Hessian of " + h.length + " entries is not square");
            }
            // dead inputs (never non-zero in calibration): H_cc = 1 (their weights are zeroed by the loop)
            boolean[] dead = new boolean[cols];
            for (int c = 0; c < cols; c++) {
                if (h[c * cols + c] == 0) {
                    h[c * cols + c] = 1;
                    dead[c] = true;
                }
            }
            // act-order: columns by decreasing H_cc (stable, like torch.argsort on distinct values)
            int[] perm = IntStream.range(0, cols).toArray();
            if (cfg.actOrder()) {
                double[] diag = new double[cols];
                for (int c = 0; c < cols; c++) diag[c] = h[c * cols + c];
                perm = IntStream.range(0, cols).boxed().sorted((a, b) -> Double.compare(diag[b], diag[a]))
                        .mapToInt(Integer::intValue).toArray();
                h = permuteSymmetric(h, cols, perm);
            }
            double mean = 0;
            for (int c = 0; c < cols; c++) mean += h[c * cols + c];
            double damp = cfg.percDamp() * mean / cols;
            for (int c = 0; c < cols; c++) h[c * cols + c] += damp;
            return new PreparedHessian(cols, dead, perm, upperCholeskyOfInverse(be, h, cols));
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
        TensorBackend la = weight.backend();
        int rows = (int) weight.size(0), cols = (int) weight.size(1), group = spec.groupSize();
        if (cols % group != 0) return null; // the Java loop says why
        float[] w = weight.toFloats();
        for (int c = 0; c < cols; c++) {
            if (prepared.dead()[c]) for (int r = 0; r < rows; r++) w[r * cols + c] = 0f;
        }
        int[] perm = prepared.perm();
        if (!isIdentity(perm)) w = permuteColumns(w, rows, cols, perm);
        int groups = cols / group;
        int[] levelsPerm = new int[rows * cols];
        float[] scales = new float[rows * groups], zeros = new float[rows * groups];
        Double loss = la.gptqIntColumns(w, rows, cols, prepared.hinv(), cfg.blockSize(), group, spec.bits(), spec.symmetric(),
                levelsPerm, scales, zeros);
        if (loss == null) return null;
        int[] groupOfPermCol = new int[cols];
        for (int c = 0; c < cols; c++) groupOfPermCol[c] = c / group;
        return unpermuted(rows, cols, groups, perm, levelsPerm, groupOfPermCol, scales, zeros, loss);
    }

    /** The loop's output back in the original column order. */
    private static Rounded unpermuted(int rows, int cols, int groups, int[] perm, int[] levelsPerm, int[] groupOfPermCol,
                                      float[] scales, float[] zeros, double loss) {
        int[] levels = new int[rows * cols];
        int[] gIdx = new int[cols];
        for (int j = 0; j < cols; j++) {
            int c = perm[j];
            gIdx[c] = groupOfPermCol[j];
            for (int r = 0; r < rows; r++) levels[r * cols + c] = levelsPerm[r * cols + j];
        }
        return new Rounded(rows, cols, groups, levels, scales, zeros, gIdx, loss);
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

    /** Upper triangular U with {@code H⁻¹ = Uᵀ·U}, through the backend's Cholesky and triangular solve. */
    static <B extends ForwardOps & LinearAlgebra> float[] upperCholeskyOfInverse(B be, double[] h, int n) {
        float[] hf = new float[n * n];
        for (int i = 0; i < hf.length; i++) hf[i] = (float) h[i];
        return be.scratchValue(() -> {
            Tensor l = be.cholesky(be.fromFloats(hf, n, n));
            Tensor linv = be.invertTriangular(l, true);
            Tensor inv = be.matmul(linv, linv, true, false);          // H⁻¹ = L⁻ᵀ·L⁻¹
            float[] u = be.transpose(be.cholesky(inv)).toFloats();  // upper factor
            for (float v : u) {
                if (!Float.isFinite(v)) {
                    throw new ArithmeticException("GPTQ: the damped Hessian is not positive definite; raise the damping");
                }
            }
            return u;
        });
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
