package io.blockquant.tensor;

/**
 * Dense factorizations and triangular solves (GPTQ's inverse Hessian, LoRC's SVD), on LAPACK or cuSOLVER.
 * Inputs and results are float32 tensors; backends may compute in float64 inside.
 */
public interface LinearAlgebra {

    /**
     * Lower Cholesky factor L of a symmetric positive-definite matrix, {@code a = L·Lᵀ}.
     *
     * @throws ArithmeticException when {@code a} is not positive definite
     */
    Tensor cholesky(Tensor a);

    /** Solves {@code T·X = B} for X, T triangular (lower or upper). */
    Tensor solveTriangular(Tensor t, Tensor b, boolean lower);

    /** {@code T⁻¹} of a triangular T (GPTQ's L⁻¹). */
    Tensor invertTriangular(Tensor t, boolean lower);

    /** Thin SVD {@code a = U·diag(S)·Vᵀ}; returns {U [m,k], S [k], V [n,k]}, k = min(m, n). */
    Tensor[] svd(Tensor a);

    /**
     * GPTQ's column loop for an integer grid with groups found as the loop reaches them (Alg. 1 with lazy batches
     * of {@code blockSize} ≤ 128 columns), run where this backend computes: {@code w} [rows, cols] (dead columns
     * zeroed, permuted for act-order) and {@code hinvUpper} [cols, cols], the upper Cholesky factor of the damped
     * H⁻¹. Fills {@code levels} [rows, cols] and {@code scales}, {@code zeros} [rows, cols/group] and returns the
     * loss; null when this backend has no such loop (the caller runs the Java one, which defines the semantics).
     */
    default Double gptqIntColumns(float[] w, int rows, int cols, float[] hinvUpper, int blockSize, int group, int bits,
                                  boolean symmetric, int[] levels, float[] scales, float[] zeros) {
        return null;
    }

    /**
     * As above with {@code w} and {@code hinvUpper} already where this backend computes: {@code w} is overwritten
     * (its columns end as their dequantized values, in the loop's order). Null when this backend has no such loop.
     */
    default Double gptqIntColumns(Tensor w, Tensor hinvUpper, int blockSize, int group, int bits, boolean symmetric,
                                  int[] levels, float[] scales, float[] zeros) {
        return null;
    }
}
