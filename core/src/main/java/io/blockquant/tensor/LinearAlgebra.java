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
}
