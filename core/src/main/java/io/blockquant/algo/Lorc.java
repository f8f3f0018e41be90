package io.blockquant.algo;

import io.blockquant.model.FloatRounding;
import io.blockquant.quant.FpFormat;
import io.blockquant.quant.FpQuantizer;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;

/**
 * Low Rank Compensation (LoRC; ZeroQuant-V2, Yao et al., 2023, section 5, used by ZeroQuant-FP section 3):
 * the quantization error {@code E = W − Ŵ} of a linear weight {@code [out, in]} is approximated by its rank-r
 * truncated SVD {@code E ≈ U_r·S_r·V_rᵀ}, split evenly between two factors, {@code U = U_r·S_r^½} {@code [out, r]}
 * and {@code V = S_r^½·V_rᵀ} {@code [r, in]}, kept beside Ŵ: the layer computes {@code x·(Ŵ + U·V)ᵀ}.
 * The even split gives both factors the same range ({@code UᵀU = V·Vᵀ = S_r}), which is what makes them
 * quantizable; by Eckart–Young the rank-r truncation is the best rank-r approximation in Frobenius norm.
 */
public final class Lorc {

    private Lorc() {}

    /**
     * The factors, row-major: {@code u [rows, rank]}, {@code v [rank, cols]}; {@code W ≈ Ŵ + u·v}.
     */
    public record Factors(int rows, int cols, int rank, LorcFactorFormat format, float[] u, float[] v)
            implements java.io.Serializable {

        /** {@code U·V}, row-major {@code [rows, cols]}, accumulated in float64. */
        public float[] product() {
            float[] out = new float[rows * cols];
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < cols; j++) {
                    double s = 0;
                    for (int k = 0; k < rank; k++) s += (double) u[i * rank + k] * v[k * cols + j];
                    out[i * cols + j] = (float) s;
                }
            }
            return out;
        }

        /** {@code Ŵ + U·V}: the compensated weight. */
        public float[] compensate(float[] quantized) {
            if (quantized.length != rows * cols) {
                throw new IllegalArgumentException(quantized.length + " weights for LoRC factors of " + rows + "x" + cols);
            }
            float[] uv = product();
            for (int i = 0; i < uv.length; i++) uv[i] += quantized[i];
            return uv;
        }
    }

    /**
     * Rank-{@code rank} LoRC factors of {@code weight − quantized} (both float32 {@code [out, in]}), through
     * {@link TensorBackend#svd}: the paper's plain SVD, best in Frobenius norm of the weight error.
     */
    public static Factors factors(Tensor weight, Tensor quantized, int rank, LorcFactorFormat format) {
        return factors(weight, quantized, rank, format, null);
    }

    /**
     * Like {@link #factors(Tensor, Tensor, int, LorcFactorFormat)}; with {@code hessian} (GPTQ's damped
     * {@code H = 2XXᵀ} of the layer's calibration inputs), the rank-r correction that is best for the layer's
     * <em>output</em> error {@code ‖(E − U·V)·X‖_F} instead of the weight error {@code ‖E − U·V‖_F}. GPTQ leaves
     * E deliberately large along directions the inputs do not excite (it moves the error there), so the plain
     * SVD spends its rank undoing that compensation, which can raise the output error; weighting by the inputs
     * does not. With {@code H⁻¹ = RᵀR} (R: GPTQ's upper factor), {@code L = R⁻¹} has {@code L·Lᵀ = H}, the
     * output error is {@code ‖(E − U·V)·L‖_F}, and by Eckart–Young its minimum is {@code U·V = [E·L]_r·R}.
     */
    public static Factors factors(Tensor weight, Tensor quantized, int rank, LorcFactorFormat format,
                                  GptqQuantizer.PreparedHessian hessian) {
        int rows = (int) weight.size(0), cols = (int) weight.size(1);
        if (weight.rank() != 2 || quantized.rank() != 2 || quantized.size(0) != rows || quantized.size(1) != cols) {
            throw new IllegalArgumentException("LoRC needs two weights of one 2-D shape, got " + weight.describe()
                    + " and " + quantized.describe());
        }
        int k = Math.min(rows, cols);
        if (rank < 0 || rank > k) {
            throw new IllegalArgumentException("LoRC rank " + rank + " is outside 0.." + k + " for a weight " + weight.describe());
        }
        TensorBackend be = weight.backend();
        if (hessian != null && hessian.cols() != cols) {
            throw new IllegalArgumentException("LoRC: a Hessian of " + hessian.cols() + " columns for a weight " + weight.describe());
        }
        int[] perm = hessian == null ? null : hessian.perm(); // GPTQ's factor is in act-order column order
        float[] v = new float[rank * cols];
        float[] u = new float[rows * rank];
        be.scratchValue(() -> {
            Tensor e = be.sub(weight, quantized);                           // E = W − Ŵ
            Tensor r = null;
            if (hessian != null) {
                e = be.selectColumns(e, perm);
                r = be.fromFloats(hessian.hinv(), cols, cols);
                e = be.transpose(be.solveTriangular(be.transpose(r), be.transpose(e), true)); // E·R⁻¹ = E·L
            }
            Tensor[] t = be.svd(e);                                         // = U·diag(S)·Vᵀ
            float[] uAll = t[0].toFloats(), s = t[1].toFloats(), vAll = t[2].toFloats(); // U [rows, k], S [k], V [cols, k]
            for (int j = 0; j < rank; j++) {
                float root = (float) Math.sqrt(s[j]); // the even split: S^½ to each side
                for (int i = 0; i < rows; i++) u[i * rank + j] = uAll[i * k + j] * root;
                for (int c = 0; c < cols; c++) v[j * cols + c] = root * vAll[c * k + j];
            }
            if (hessian != null) {
                float[] back = be.matmul(be.fromFloats(v, rank, cols), r, false, false).toFloats(); // S^½·V_rᵀ·R
                for (int j = 0; j < rank; j++) for (int c = 0; c < cols; c++) v[j * cols + perm[c]] = back[j * cols + c];
            }
            return null;
        });
        switch (format) {
            case FP16 -> {
                for (int i = 0; i < u.length; i++) u[i] = FloatRounding.toFloat16(u[i]);
                for (int i = 0; i < v.length; i++) v[i] = FloatRounding.toFloat16(v[i]);
            }
            case FP8 -> {
                FpQuantizer.fakeQuantizeTokens(u, rows, rank, FpFormat.E4M3); // one scale per output channel
                FpQuantizer.fakeQuantizeTokens(v, rank, cols, FpFormat.E4M3); // one scale per rank component
            }
            default -> { }
        }
        return new Factors(rows, cols, rank, format, u, v);
    }
}
