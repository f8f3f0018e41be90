package io.blockquant.algo;

import io.blockquant.tensor.Tensor;
import java.io.Serializable;

/**
 * GPTQ's layer Hessian {@code H = 2/n · Σ x·xᵀ} over the n calibration tokens that enter a linear layer.
 * Each batch's {@code XᵀX} is one float32 matrix product on the backend; the running sum is kept in float64
 * on the heap. It is a plain sum, so accumulators filled by different Spark tasks on different samples
 * {@link #merge} into the one the whole calibration set would give.
 */
public final class HessianAccumulator implements Serializable {
    private static final long serialVersionUID = 1L;

    private final int columns;
    private final double[] sum;
    private long tokens;

    public HessianAccumulator(int columns) {
        this.columns = columns;
        this.sum = new double[columns * columns];
    }

    /** Adds the tokens of {@code x [tokens, columns]}. */
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

    /** {@link #hessian()} computed in this accumulator's own array, which it hands over: the accumulator is spent. */
    public double[] takeHessian() {
        if (tokens == 0) throw new IllegalStateException("no calibration token reached this layer");
        double f = 2.0 / tokens;
        for (int i = 0; i < sum.length; i++) sum[i] *= f;
        tokens = -1;
        return sum;
    }

    public int columns() {
        return columns;
    }

    public long tokens() {
        return tokens;
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
