package io.blockquant.algo;

import io.blockquant.model.Family;
import io.blockquant.quant.ActivationQuant;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * SmoothQuant's settings: INT weights rounded to nearest after smoothing, the run's activation quantization, and
 * the migration strength α (0.5, the paper's default and OmniQuant's LET start).
 */
public record SmoothQuantSettings(WeightFormat format, ActivationQuant activations, double alpha) implements MethodSettings {

    public SmoothQuantSettings {
        if (!(alpha >= 0 && alpha <= 1)) throw new IllegalArgumentException("--alpha must be in [0, 1], got " + alpha);
        if (format.isFp()) throw new IllegalArgumentException("--wformat: SmoothQuant here rounds INT weights; drop --wformat");
    }

    static SmoothQuantSettings parse(RecipeKeys keys, Family family, ActivationQuant acts) {
        WeightFormat w = WeightFormat.parse(keys);
        if (LorcSettings.parse(keys).isOn()) throw new IllegalArgumentException("--lorc-rank: LoRC follows RTN or GPTQ here, not SmoothQuant");
        if (acts.linearInputs() == null) {
            throw new IllegalArgumentException("--method smoothquant moves activation outliers into the weights: it needs --abits 2..8");
        }
        return new SmoothQuantSettings(w, acts, keys.number("alpha", 0.5));
    }

    @Override
    public String name() {
        return "smoothquant";
    }

    @Override
    public LorcSettings lorc() {
        return LorcSettings.NONE;
    }

    @Override
    public BlockCalibrator calibrator() {
        return new SmoothQuantCalibrator(format.levels(), activations, alpha);
    }

    @Override
    public String options() {
        return " α" + alpha;
    }

    @Override
    public Map<String, Object> recipe() {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("alpha", alpha);
        return Map.of("smoothquant", o);
    }
}
