package io.blockquant.tensor;

/**
 * A running {@code Σ xᵀx} over batches of rows {@code x [tokens, columns]}: GPTQ's layer Hessian before its factor
 * {@code 2/n}. Where it is kept is the backend's business: float64 on the Java heap for the CPU backend (and for
 * partial sums that travel between Spark tasks), float32 on the device for a GPU backend, where copying an n×n
 * sum to the heap after every batch cost more than the products (a Llama-3-8B down_proj's is 0.8 GB).
 */
public interface GramSum extends AutoCloseable {

    int columns();

    /** The rows (calibration tokens) added so far. */
    long rows();

    /** Adds {@code xᵀx}. */
    void add(Tensor x);

    /** {@code Σ}'s diagonal. */
    double[] diagonal();

    /**
     * {@code P·(f·Σ + diag(d))·Pᵀ} as a float32 {@code [columns, columns]} tensor on {@code be}: the sum scaled,
     * its diagonal raised by {@code d} (given in the permuted order) and rows and columns taken in the order
     * {@code perm}. The sum stays as it was.
     */
    Tensor scaledWithDiagonal(TensorBackend be, double f, double[] d, int[] perm);

    /**
     * {@code tr(A·Σ·Aᵀ)} for each {@code A [m, columns]} (tensors of one backend): the sum over the added rows x of
     * {@code ‖A·x‖²}. With {@code A = W − Ŵ} and {@code A = W} these are a linear layer's squared output error and
     * squared output over every calibration token, without running the tokens through the layer again.
     */
    double[] quadraticForms(Tensor... a);

    /** {@code tr(A·S·Aᵀ) = Σ (A·S) ⊙ A} for a symmetric {@code s}, in exact float32 products summed in float64. */
    static double quadraticForm(Tensor a, Tensor s) {
        TensorBackend be = a.backend();
        return be.exactFloat32(() -> be.scratchValue(() -> be.sum(be.mul(be.matmul(a, s, false, false), a))));
    }

    /** Frees device memory now (a heap sum is left to the garbage collector). */
    @Override
    default void close() {}
}
