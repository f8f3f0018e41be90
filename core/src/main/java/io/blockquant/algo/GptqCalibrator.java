package io.blockquant.algo;

import io.blockquant.tensor.GramSum;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;

/** GPTQ on each true-sequential group's input Hessian, INT levels or FP codes, then LoRC's factors when asked for. */
public record GptqCalibrator(GptqSettings settings) implements BlockCalibrator.OnGroupHessians {

    @Override
    public GptqQuantizer.PreparedHessian prepare(TensorBackend be, GramSum hessian) {
        return GptqQuantizer.PreparedHessian.of(be, hessian, settings.config());
    }

    @Override
    public StoredWeight quantize(Tensor weight, GptqQuantizer.PreparedHessian hessian) {
        StoredWeight q = settings.format().isFp()
                ? GptqQuantizer.quantizeFp(weight, hessian, settings.config(), settings.format().fp())
                : GptqQuantizer.quantize(weight, hessian, settings.config());
        return settings.lorc().compensate(weight, q, hessian);
    }

    /** INT levels without LoRC: the column loop's output is the weight the block computes with (on a GPU, left there). */
    @Override
    public QuantizedLayer quantizeLayer(Tensor weight, GptqQuantizer.PreparedHessian hessian) {
        if (settings.format().isFp() || settings.lorc().isOn()) return BlockCalibrator.OnGroupHessians.super.quantizeLayer(weight, hessian);
        return GptqQuantizer.quantizeLayer(weight, hessian, settings.config());
    }
}
