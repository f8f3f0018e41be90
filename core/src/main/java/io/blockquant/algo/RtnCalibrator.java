package io.blockquant.algo;

import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.FpQuantizer;
import io.blockquant.tensor.Tensor;

/** RTN: each weight rounded to the nearest level of its INT or FP format, then LoRC's factors when asked for. */
public record RtnCalibrator(RtnSettings settings) implements BlockCalibrator.OnWeights {

    @Override
    public StoredWeight quantize(Tensor weight) {
        FpQuantSpec fp = settings.format().fp();
        StoredWeight q = fp == null ? RtnQuantizer.quantize(weight, settings.format().levels()) : roundFp(weight, fp);
        return settings.lorc().compensate(weight, q, null);
    }

    /** FP codes per group of input columns (ZeroQuant-FP's weight quantizer without GPTQ). */
    private static FpQuantizedLinear roundFp(Tensor w, FpQuantSpec spec) {
        int rows = (int) w.size(0), cols = (int) w.size(1), group = spec.groupFor(cols);
        byte[] codes = new byte[rows * cols];
        float[] scales = FpQuantizer.encodeWeight(w.toFloats(), rows, cols, spec, codes);
        int[] gIdx = new int[cols];
        for (int c = 0; c < cols; c++) gIdx[c] = c / group;
        return new FpQuantizedLinear(rows, cols, spec, cols / group, codes, scales, gIdx, 0);
    }
}
