package io.blockquant.algo;

import java.util.Map;

/** Round to nearest: the weight format and LoRC. */
public record RtnSettings(WeightFormat format, LorcSettings lorc) implements MethodSettings {

    public RtnSettings {
        if (lorc.hessianWeighted()) {
            throw new IllegalArgumentException("--lorc-svd hessian weights LoRC by GPTQ's Hessian: it needs --method gptq and --lorc-rank > 0");
        }
    }

    static RtnSettings parse(RecipeKeys keys) {
        return new RtnSettings(WeightFormat.parse(keys), LorcSettings.parse(keys));
    }

    @Override
    public String name() {
        return "rtn";
    }

    @Override
    public BlockCalibrator calibrator() {
        return new RtnCalibrator(this);
    }

    @Override
    public String options() {
        return "";
    }

    @Override
    public Map<String, Object> recipe() {
        return Map.of();
    }
}
