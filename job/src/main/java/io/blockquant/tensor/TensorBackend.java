package io.blockquant.tensor;

import io.blockquant.quant.IntQuantSpec;

/**
 * The narrow set of operations every block algorithm is written against. The CPU implementation is
 * {@link Nd4jBackend}; a CUDA implementation serves GPU executors. Every operation returns a new tensor
 * and leaves its inputs untouched, so algorithms stay pure functions of their inputs.
 *
 * <p>Shapes: a 2-D tensor {@code [rows, cols]} holds one row per token; attention works on 3-D tensors
 * {@code [batch·heads, seq, headDim]}. Linear-layer weights are stored as Hugging Face stores them,
 * {@code [out, in]}.
 */
public interface TensorBackend {

    String name();

    /**
     * Makes the calling thread's work run on the GPU Spark assigned to its task ({@code address}: the index
     * {@code cluster/gpu/discover-gpus.sh} reported, as nvidia-smi numbers the GPUs). A backend without
     * devices ignores it, as the CPU backend does.
     */
    default void bindDevice(String address) {}

    // ---- creation and transfer -------------------------------------------------------------------

    Tensor fromFloats(float[] data, long... shape);

    Tensor zeros(long... shape);

    float[] toFloats(Tensor t);

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

    Tensor scale(Tensor a, float factor);

    /** {@code a[i, j] + row[j]} for a 2-D tensor and a vector of its column count. */
    Tensor addRowVector(Tensor a, Tensor row);

    /** {@code a[i, j] · row[j]}. */
    Tensor mulRowVector(Tensor a, Tensor row);

    Tensor activate(Tensor a, Activation activation);

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

    // ---- backward (gradients for block-wise training, e.g. OmniQuant) -----------------------------
    // Each takes the forward's input (or output where cheaper) and the upstream gradient dy of the same
    // shape as the forward's output, and returns the gradient(s) of the forward's input(s).

    /** Backward of {@link #rmsNorm}: {@code {dx, dWeight}}; dWeight summed over rows. */
    Tensor[] rmsNormBackward(Tensor x, Tensor weight, float eps, Tensor dy);

    /** Backward of {@link #layerNorm}: {@code {dx, dWeight, dBias}}; dWeight and dBias summed over rows. */
    Tensor[] layerNormBackward(Tensor x, Tensor weight, float eps, Tensor dy);

    /**
     * Backward of {@link #causalSoftmax} from its output {@code probs}: the gradient of the raw scores,
     * {@code scale·P⊙(dP − Σ_k P_k·dP_k)} per row (zero above the diagonal, where P is zero).
     */
    Tensor causalSoftmaxBackward(Tensor probs, Tensor dProbs, float scale);

    /** Backward of {@link #rope}: the rotation's transpose, i.e. RoPE with the angles negated. */
    Tensor ropeBackward(Tensor dy, float[] invFreq);

    /** Backward of {@link #activate}: {@code dy ⊙ f'(x)} from the activation's input x. */
    Tensor activationBackward(Tensor x, Tensor dy, Activation activation);

    /** Column sums of a 2-D tensor, {@code [cols]} (bias gradients). */
    Tensor columnSums(Tensor a);

    /**
     * Backward of {@link #repeatHeads}: {@code [batch·kvHeads·groups, seq, d] -> [batch·kvHeads, seq, d]},
     * summing the gradients of the query heads that share a key/value head.
     */
    Tensor sumRepeatedHeads(Tensor x, int batch, int kvHeads, int groups);

    // ---- quantization ----------------------------------------------------------------------------

    /** Round-to-nearest fake quantization of a weight {@code [out, in]}: quantize, then dequantize. */
    Tensor fakeQuantizeWeight(Tensor w, IntQuantSpec spec);

    /** Dynamic symmetric per-token (per-row) fake quantization of activations, scale = absmax/(2^(b−1)−1). */
    Tensor fakeQuantizeTokens(Tensor x, int bits);

    /** Dynamic per-token FP fake quantization of activations (ZeroQuant-FP): scale = row absmax / format max. */
    Tensor fakeQuantizeTokensFp(Tensor x, io.blockquant.quant.FpFormat format);

    // ---- linear algebra --------------------------------------------------------------------------

    /**
     * Lower Cholesky factor L of a symmetric positive-definite matrix, {@code a = L·Lᵀ}.
     *
     * @throws ArithmeticException when {@code a} is not positive definite
     */
    Tensor cholesky(Tensor a);

    /** Solves {@code T·X = B} for X, T triangular (lower or upper). */
    Tensor solveTriangular(Tensor t, Tensor b, boolean lower);

    /** {@code T⁻¹} of a triangular T (GPTQ's L⁻¹): by default a solve against the identity. */
    default Tensor invertTriangular(Tensor t, boolean lower) {
        int n = (int) t.size(0);
        float[] eye = new float[n * n];
        for (int i = 0; i < n; i++) eye[i * n + i] = 1f;
        return solveTriangular(t, fromFloats(eye, n, n), lower);
    }

    /** Thin SVD {@code a = U·diag(S)·Vᵀ}; returns {U [m,k], S [k], V [n,k]}, k = min(m, n). */
    Tensor[] svd(Tensor a);
}
