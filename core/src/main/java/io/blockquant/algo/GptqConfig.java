package io.blockquant.algo;

import io.blockquant.quant.IntQuantSpec;
import java.io.Serializable;

/**
 * GPTQ settings, with the reference implementation's defaults: damping 1 % of the mean Hessian
 * diagonal, lazy batches of 128 columns.
 *
 * @param actOrder     quantize columns in order of decreasing Hessian diagonal ("desc_act")
 * @param staticGroups with act-order: fix every group's scale from the unquantized weight up front, so
 *                     groups stay contiguous in the original column order
 */
public record GptqConfig(IntQuantSpec quant, double percDamp, int blockSize, boolean actOrder, boolean staticGroups)
        implements Serializable {

    public static GptqConfig of(IntQuantSpec quant) {
        return new GptqConfig(quant, 0.01, 128, false, false);
    }

    public GptqConfig {
        if (percDamp < 0) throw new IllegalArgumentException("damping must be >= 0, got " + percDamp);
        if (blockSize < 1) throw new IllegalArgumentException("GPTQ block size must be >= 1, got " + blockSize);
    }
}
