package io.blockquant.tensor;

/**
 * The operations a model's forward pass is written with: tensor creation and transfer, layout, matrix
 * products, element-wise arithmetic, reductions, norms and attention. Every operation returns a new tensor
 * and leaves its inputs untouched.
 *
 * <p>Shapes: a 2-D tensor {@code [rows, cols]} holds one row per token; attention works on 3-D tensors
 * {@code [batch·heads, seq, headDim]}. Linear-layer weights are stored as Hugging Face stores them,
 * {@code [out, in]}.
 */
public interface ForwardOps {

    // ---- creation and transfer -------------------------------------------------------------------

    Tensor fromFloats(float[] data, long... shape);

    Tensor zeros(long... shape);

    float[] toFloats(Tensor t);

    /**
     * Elements {@code [from, from + dst.remaining() / 4)} of {@code t} (row-major) into {@code dst} at its position as
     * little-endian float32, the position advanced past them: a large tensor written out piece by piece through a
     * reused buffer, never whole on the Java heap. May be called from a thread other than the one that computed
     * {@code t}, once the work that computed it has finished (a result read back, or {@code synchronize}).
     */
    void toBytes(Tensor t, long from, java.nio.ByteBuffer dst);

    /**
     * Runs {@code work} with its temporary tensors in reusable scratch memory that is released as a whole
     * when it returns; the tensor it returns is copied out and stays valid. Allocating fresh memory for
     * every intermediate costs more than the arithmetic at these sizes (measured: 1–10 ms per 2 MB
     * allocation on the CPU backend, 0.05 ms from scratch memory).
     */
    Tensor scratch(java.util.function.Supplier<Tensor> work);

    /** Like {@link #scratch}, for work whose result holds no tensor (it ends on the Java heap). */
    <T> T scratchValue(java.util.function.Supplier<T> work);

    // ---- layout ----------------------------------------------------------------------------------

    /** Same elements, new shape (row-major order is kept). */
    Tensor reshape(Tensor t, long... shape);

    /** Transpose of a 2-D tensor. */
    Tensor transpose(Tensor t);

    /** Rows {@code [from, to)} of a 2-D tensor. */
    Tensor rows(Tensor t, long from, long to);

    /** Columns {@code [from, to)} of a 2-D tensor. */
    Tensor columns(Tensor t, long from, long to);

    /** The given columns of a 2-D tensor, in the given order. */
    Tensor selectColumns(Tensor t, int[] columns);

    /** The given rows of a 2-D tensor, in the given order (embedding lookup). */
    Tensor gatherRows(Tensor table, int[] rows);

    /** 2-D tensors side by side: {@code [r, c1] ++ [r, c2] -> [r, c1 + c2]}. */
    Tensor concatColumns(Tensor... parts);

    // ---- matrix products -------------------------------------------------------------------------

    /** {@code op(a)·op(b)} for 2-D tensors, op = transpose when the flag is set. */
    Tensor matmul(Tensor a, Tensor b, boolean transposeA, boolean transposeB);

    /** Batched matrix product of 3-D tensors {@code [n, m, k]·[n, k, p] -> [n, m, p]}. */
    Tensor batchMatmul(Tensor a, Tensor b, boolean transposeA, boolean transposeB);

    // ---- element-wise ----------------------------------------------------------------------------

    Tensor add(Tensor a, Tensor b);

    Tensor sub(Tensor a, Tensor b);

    Tensor mul(Tensor a, Tensor b);

    /** {@code a / b} element-wise, IEEE float32 division. */
    Tensor div(Tensor a, Tensor b);

    Tensor scale(Tensor a, float factor);

    /** {@code a[i, j] + row[j]} for a 2-D tensor and a vector of its column count. */
    Tensor addRowVector(Tensor a, Tensor row);

    /** {@code a[i, j] · row[j]}. */
    Tensor mulRowVector(Tensor a, Tensor row);

    Tensor activate(Tensor a, Activation activation);

    /** A gated MLP's product {@code act(gate) ⊙ up} (SwiGLU with SiLU); a backend may fuse the two element-wise passes. */
    default Tensor gatedActivation(Tensor gate, Tensor up, Activation activation) {
        return mul(activate(gate, activation), up);
    }

    /** {@code 1/a} element-wise, in float32 (LET's inverse scales). */
    Tensor reciprocal(Tensor a);

    /**
     * An equivalent transformation folded into a linear (OmniQuant's LET, eq. 4–5, and its row scaling,
     * {@link io.blockquant.quant.ScaleShift}): {@code W2 = diag(rowFactor)·W·diag(colScale)},
     * {@code b2 = rowFactor⊙(b + W·colShift − rowShift)}, W {@code [out, in]}; any of b and the four vectors may be
     * null (identity). Returns {@code {W2, b2}}, b2 null when b and colShift are null.
     */
    Tensor[] scaleShiftLinear(Tensor w, Tensor b, Tensor colScale, Tensor colShift, Tensor rowFactor, Tensor rowShift);

    // ---- reductions ------------------------------------------------------------------------------

    /** Sum of all elements, accumulated in float64. */
    double sum(Tensor a);

    /** Sum of squares of all elements, accumulated in float64. */
    double sumOfSquares(Tensor a);

    /** {@code log Σ_j exp(a[i, j])} per row of a 2-D tensor, as float64. */
    double[] rowLogSumExp(Tensor a);

    /** {@code a[i, columns[i]]} for every row i of a 2-D tensor. */
    float[] pickPerRow(Tensor a, int[] columns);

    /** Per-row maximum absolute value of a 2-D tensor, {@code [rows]}. */
    Tensor rowAbsMax(Tensor a);

    /**
     * Per window of {@code seq} rows of a 2-D tensor {@code [windows·seq, cols]}, each column's maximum and minimum
     * over the window's rows: {@code [windows, 2·cols]}, the maxima then the minima (calibration input ranges
     * without the activations leaving the device).
     */
    Tensor windowColumnRanges(Tensor a, int seq);

    // ---- normalization and attention -------------------------------------------------------------

    /** RMSNorm over the last dimension: {@code x / sqrt(mean(x²) + eps) · weight}. */
    Tensor rmsNorm(Tensor x, Tensor weight, float eps);

    /** LayerNorm over the last dimension; {@code bias} may be null. */
    Tensor layerNorm(Tensor x, Tensor weight, Tensor bias, float eps);

    /** {@code [batch·seq, heads·headDim] -> [batch·heads, seq, headDim]}. */
    Tensor splitHeads(Tensor x, int batch, int seq, int heads, int headDim);

    /** Inverse of {@link #splitHeads}. */
    Tensor mergeHeads(Tensor x, int batch, int seq, int heads, int headDim);

    /**
     * Grouped-query attention: {@code [batch·kvHeads, seq, d] -> [batch·kvHeads·groups, seq, d]},
     * each key/value head repeated for the {@code groups} query heads that share it.
     */
    Tensor repeatHeads(Tensor x, int batch, int kvHeads, int groups);

    /**
     * Rotary position embedding on {@code [n, seq, headDim]}, positions {@code 0..seq-1}, in the
     * "rotate half" convention of Llama/Falcon in Hugging Face: the first {@code 2·invFreq.length} dims of
     * each head are split into halves {@code (x1, x2)} and become {@code (x1·cos − x2·sin, x2·cos + x1·sin)}
     * with angle {@code pos·invFreq[i]} computed in float32.
     */
    Tensor rope(Tensor x, float[] invFreq);

    /**
     * Scaled, causally masked softmax over the last dimension of {@code [n, seq, seq]} scores:
     * position i sees keys 0..i.
     */
    Tensor causalSoftmax(Tensor scores, float scale);
}
