package io.blockquant.algo;

import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.Serializable;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * LoRC (ZeroQuant-FP, Wu et al. 2023, §3.2): a rank-{@code rank} SVD of a layer's remaining quantization error
 * kept beside the quantized weight; {@code hessianWeighted}: the SVD weighted by the layer's input Hessian (the
 * output error's best rank-r fix) instead of the paper's plain SVD of the weight error.
 */
public record LorcSettings(int rank, LorcFactorFormat format, boolean hessianWeighted) implements Serializable {

    public static final LorcSettings NONE = new LorcSettings(0, LorcFactorFormat.FP16, false);

    public LorcSettings {
        if (rank < 0) throw new IllegalArgumentException("--lorc-rank must be >= 0, got " + rank);
        if (hessianWeighted && rank == 0) {
            throw new IllegalArgumentException("--lorc-svd hessian weights LoRC by GPTQ's Hessian: it needs --method gptq and --lorc-rank > 0");
        }
    }

    /** Keys {@code lorc-rank}, {@code lorc-format}, {@code lorc-svd}. */
    static LorcSettings parse(RecipeKeys keys) {
        int rank = keys.integer("lorc-rank", 0);
        LorcFactorFormat format = switch (keys.text("lorc-format", "fp16")) {
            case "fp32" -> LorcFactorFormat.FP32;
            case "fp16" -> LorcFactorFormat.FP16;
            case "fp8" -> LorcFactorFormat.FP8;
            default -> throw new IllegalArgumentException("--lorc-format '" + keys.text("lorc-format", "fp16") + "' (expected fp32, fp16 or fp8)");
        };
        String svd = keys.text("lorc-svd", "plain");
        if (!svd.equals("plain") && !svd.equals("hessian")) throw new IllegalArgumentException("--lorc-svd '" + svd + "' (expected plain or hessian)");
        return new LorcSettings(rank, format, svd.equals("hessian"));
    }

    public boolean isOn() {
        return rank > 0;
    }

    /** {@code q} with the rank-r factors of {@code weight − q} beside it (none when off); {@code hessian} only when weighted. */
    StoredWeight compensate(Tensor weight, StoredWeight q, GptqQuantizer.PreparedHessian hessian) {
        if (!isOn()) return q;
        TensorBackend be = weight.backend();
        Lorc.Factors f = be.scratchValue(() -> Lorc.factors(weight, be.fromFloats(q.dequantize(), weight.shape()), rank, format,
                hessianWeighted ? hessian : null));
        return new LorcCompensated(q, f);
    }

    public String label() {
        return isOn() ? " lorc" + rank + (hessianWeighted ? "-hessian" : "") : "";
    }

    public Map<String, Object> recipe() {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("lorc_rank", rank);
        r.put("lorc_format", isOn() ? format.name().toLowerCase(Locale.ROOT) : "none");
        r.put("lorc_svd", !isOn() ? "none" : hessianWeighted ? "hessian" : "plain");
        return r;
    }
}
