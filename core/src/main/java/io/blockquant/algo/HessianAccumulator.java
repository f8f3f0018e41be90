package io.blockquant.algo;

import io.blockquant.tensor.GramSum;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.Serializable;

/**
 * GPTQ's layer Hessian {@code H = 2/n · Σ x·xᵀ} over the n calibration tokens that enter a linear layer, its sum
 * kept in float64 on the heap: the CPU backend's {@link GramSum}, and the partial sums Spark tasks exchange.
 * Each batch's {@code XᵀX} is one float32 matrix product on the backend. It is a plain sum, so accumulators
 * filled by different Spark tasks on different samples {@link #merge} into the one the whole calibration set
 * would give.
 */
public final class HessianAccumulator implements GramSum, Serializable {
    private static final long serialVersionUID = 1L;

    private final int columns;
    private final double[] sum;
    private long tokens;

    public HessianAccumulator(int columns) {
        this.columns = columns;
        this.sum = new double[columns * columns];
    }

    /** Adds the tokens of {@code x [tokens, columns]}. */
    @Override
    public void add(Tensor x) {
        if (x.size(1) != columns) {
            throw new IllegalArgumentException("Hessian of " + columns + " columns fed a " + x.describe() + " input");
        }
        float[] xtx = x.backend().scratchValue(() -> x.backend().matmul(x, x, true, false).toFloats());
        for (int i = 0; i < sum.length; i++) sum[i] += xtx[i];
        tokens += x.size(0);
    }

    public HessianAccumulator merge(HessianAccumulator other) {
        if (other.columns != columns) throw new IllegalArgumentException("merging Hessians of " + columns + " and " + other.columns + " columns");
        HessianAccumulator out = new HessianAccumulator(columns);
        for (int i = 0; i < sum.length; i++) out.sum[i] = sum[i] + other.sum[i];
        out.tokens = tokens + other.tokens;
        return out;
    }

    /**
     * Adds {@code other} into this accumulator (the same float64 sums as {@link #merge}, without a third n×n
     * array: a Llama-2-70B down_proj Hessian is 6.6 GB).
     */
    public void add(HessianAccumulator other) {
        if (other.columns != columns) throw new IllegalArgumentException("merging Hessians of " + columns + " and " + other.columns + " columns");
        for (int i = 0; i < sum.length; i++) sum[i] += other.sum[i];
        tokens += other.tokens;
    }

    /**
     * The sum for a block's layers on {@code be}: in device memory where the backend has it, else on the heap (a
     * Hessian is reduced from float32 products in float64 there, as LAPACK then factors it in float32).
     */
    public static GramSum on(TensorBackend be, int columns) {
        GramSum device = be.deviceGramSum(columns);
        return device != null ? device : new HessianAccumulator(columns);
    }

    @Override
    public int columns() {
        return columns;
    }

    public long tokens() {
        return tokens;
    }

    @Override
    public long rows() {
        return tokens;
    }

    @Override
    public double[] diagonal() {
        double[] d = new double[columns];
        for (int c = 0; c < columns; c++) d[c] = sum[c * columns + c];
        return d;
    }

    @Override
    public Tensor scaledWithDiagonal(TensorBackend be, double f, double[] d, int[] perm) {
        return be.fromFloats(scaledWithDiagonal(sum, columns, f, d, perm), columns, columns);
    }

    /** The float64 sum rounded to float32 once for all of {@code a}. */
    @Override
    public double[] quadraticForms(Tensor... a) {
        if (a.length == 0) return new double[0];
        TensorBackend be = a[0].backend();
        float[] s = new float[sum.length];
        for (int i = 0; i < s.length; i++) s[i] = (float) sum[i];
        return be.scratchValue(() -> {
            Tensor sigma = be.fromFloats(s, columns, columns);
            double[] out = new double[a.length];
            for (int i = 0; i < a.length; i++) out[i] = GramSum.quadraticForm(a[i], sigma);
            return out;
        });
    }

    /**
     * {@code P·(f·h + diag(d))·Pᵀ} of a row-major float64 {@code [n, n]}, computed in float64 and rounded to float32
     * once (the precision the factorization then works in).
     */
    public static float[] scaledWithDiagonal(double[] h, int n, double f, double[] d, int[] perm) {
        float[] out = new float[n * n];
        for (int i = 0; i < n; i++) {
            int from = perm[i] * n;
            for (int j = 0; j < n; j++) {
                double v = h[from + perm[j]] * f;
                if (i == j) v += d[i];
                out[i * n + j] = (float) v;
            }
        }
        return out;
    }

    /** {@code 2/n · Σ x·xᵀ}, row-major {@code [columns, columns]}. */
    public double[] hessian() {
        if (tokens == 0) throw new IllegalStateException("no calibration token reached this layer");
        double[] h = new double[sum.length];
        double f = 2.0 / tokens;
        for (int i = 0; i < h.length; i++) h[i] = sum[i] * f;
        return h;
    }
}
