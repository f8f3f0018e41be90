package io.blockquant.algo;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * GPTQ (INT or ZeroQuant-FP's FP weights) with LoRC: damping as a fraction of the mean Hessian diagonal, the
 * reference's lazy batches of 128 columns, act-order and static groups.
 */
public record GptqSettings(WeightFormat format, double damp, boolean actOrder, boolean staticGroups, LorcSettings lorc)
        implements MethodSettings {

    public GptqSettings {
        if (staticGroups && !actOrder) throw new IllegalArgumentException("--static-groups only applies with --act-order");
        if (!(damp >= 0 && damp < 1)) throw new IllegalArgumentException("--damp must be in [0, 1), got " + damp);
    }

    static GptqSettings parse(RecipeKeys keys) {
        return new GptqSettings(WeightFormat.parse(keys), keys.number("damp", 0.01), keys.bool("act-order", false),
                keys.bool("static-groups", false), LorcSettings.parse(keys));
    }

    public GptqConfig config() {
        return new GptqConfig(format.levels(), damp, 128, actOrder, staticGroups);
    }

    @Override
    public String name() {
        return "gptq";
    }

    @Override
    public BlockCalibrator calibrator() {
        return new GptqCalibrator(this);
    }

    @Override
    public String options() {
        return (actOrder ? " act-order" : "") + (staticGroups ? " static-groups" : "");
    }

    @Override
    public Map<String, Object> recipe() {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("act_order", actOrder);
        r.put("static_groups", staticGroups);
        r.put("damp", damp);
        r.put("gptq_block", config().blockSize());
        return r;
    }
}
