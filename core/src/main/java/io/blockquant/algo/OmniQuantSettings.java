package io.blockquant.algo;

import io.blockquant.model.Family;
import io.blockquant.quant.ActivationQuant;
import java.util.LinkedHashMap;
import java.util.Map;

/** OmniQuant's settings: the reference's recipe for the family and bits ({@link OmniQuantConfig#of}) with the keys' overrides. */
public record OmniQuantSettings(OmniQuantConfig config) implements MethodSettings {

    public OmniQuantSettings {
        if (!config.lwc() && !config.let()) throw new IllegalArgumentException("--method omniquant needs --lwc and/or --let");
    }

    /** {@code acts}: the run's activation quantization (NONE: weight-only), which training quantizes too. */
    static OmniQuantSettings parse(RecipeKeys keys, Family family, ActivationQuant acts) {
        WeightFormat w = WeightFormat.parse(keys);
        if (w.levels().symmetric()) throw new IllegalArgumentException("--sym: OmniQuant's learnable clipping is asymmetric (min-max); drop --sym");
        if (w.isFp()) throw new IllegalArgumentException("--wformat " + keys.text("wformat", "int") + ": OmniQuant here learns INT clipping only");
        if (LorcSettings.parse(keys).isOn()) throw new IllegalArgumentException("--lorc-rank: LoRC follows RTN or GPTQ here, not OmniQuant");
        OmniQuantConfig d = OmniQuantConfig.of(family, w.levels().bits(), w.levels().groupSize(), acts);
        boolean let = keys.bool("let", d.let()), letDown = keys.bool("let-down", d.letDown());
        if (letDown && !family.descriptor().gatedMlp()) {
            throw new IllegalArgumentException("--let-down: " + family + "'s MLP has no gate (a scale on its first linear's rows "
                    + "would not pass its activation unchanged); it needs a gated MLP (Llama's gate/up/down)");
        }
        // eq. 6's query/key scale is learned where it can change the loss: LET on, queries and keys quantized
        return new OmniQuantSettings(new OmniQuantConfig(d.wbits(), d.groupSize(), d.activations(), keys.bool("lwc", d.lwc()),
                let, let && OmniQuantConfig.quantizesQueryKey(acts), letDown, keys.integer("epochs", d.epochs()), keys.integer("batch-size", d.batchSize()),
                keys.number("lwc-lr", d.lwcLr()), keys.number("let-lr", d.letLr()), d.weightDecay(), keys.number("alpha", d.alpha()),
                keys.bool("aug-loss", d.augLoss())));
    }

    @Override
    public String name() {
        return "omniquant";
    }

    @Override
    public WeightFormat format() {
        return new WeightFormat(config.weightSpec(), null);
    }

    @Override
    public LorcSettings lorc() {
        return LorcSettings.NONE;
    }

    @Override
    public BlockCalibrator calibrator() {
        return new OmniQuantCalibrator(config);
    }

    @Override
    public String options() {
        return (config.lwc() ? " lwc" : "") + (config.let() ? " let" : "") + (config.qkScale() ? " qk" : "") + (config.letDown() ? " down" : "") + (config.augLoss() ? " aug" : "") + " " + config.epochs() + "ep";
    }

    @Override
    public Map<String, Object> recipe() {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("lwc", config.lwc());
        o.put("let", config.let());
        o.put("epochs", config.epochs());
        o.put("batch_size", config.batchSize());
        o.put("lwc_lr", config.lwcLr());
        o.put("let_lr", config.letLr());
        o.put("weight_decay", config.weightDecay());
        o.put("qk_scale", config.qkScale());
        o.put("let_down", config.letDown());
        o.put("alpha", config.alpha());
        o.put("aug_loss", config.augLoss());
        return Map.of("omniquant", o);
    }
}
