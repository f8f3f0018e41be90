package io.blockquant.algo;

import io.blockquant.model.Family;
import io.blockquant.quant.IntQuantSpec;
import java.io.Serializable;

/**
 * OmniQuant's settings for one run (defaults from the reference, OpenGVLab/OmniQuant {@code main.py} and its
 * scripts): weight bits and group size (≤ 0: per output channel), activation bits (16: weight-only),
 * LWC, LET (with shifts where the block allows them and activations are quantized; the query/key scale when
 * {@code qkScale}), AdamW learning rates for LWC (1e-2) and LET (5e-3), weight decay (0), epochs, windows
 * per step, and SmoothQuant's migration strength α = 0.5 for the LET scale's start.
 */
public record OmniQuantConfig(int wbits, int groupSize, int abits, boolean lwc, boolean let, boolean qkScale,
                              int epochs, int batchSize, double lwcLr, double letLr, double weightDecay,
                              double alpha) implements Serializable {

    public OmniQuantConfig {
        if (abits < 16 && (abits < 2 || abits > 8)) throw new IllegalArgumentException("activation bits must be 2..8 or 16, got " + abits);
        if (epochs < 0) throw new IllegalArgumentException("epochs must be ≥ 0, got " + epochs);
        if (batchSize < 1) throw new IllegalArgumentException("batch size must be ≥ 1, got " + batchSize);
        new IntQuantSpec(wbits, groupSize, false); // checks the bits
    }

    /**
     * The reference's recipe for a setting: 20 epochs (40 at 2 bits), LWC always, LET for
     * weight-activation settings and, where the family says so ({@code letInWeightOnly}: OPT), also
     * weight-only, one window per step.
     * The query/key scale (eq. 6) starts off: the blocks here quantize linear inputs but not query/key
     * states, and row-wise weight quantization is equivariant to scaling a row, so that scale cannot change
     * the loss (its gradient is zero); it matters once attention quantizes q and k as the reference's
     * QuantMatMul does.
     */
    public static OmniQuantConfig of(Family family, int wbits, int groupSize, int abits) {
        boolean wa = abits < 16;
        return new OmniQuantConfig(wbits, groupSize, abits, true, wa || family.descriptor().letInWeightOnly(), false,
                wbits <= 2 ? 40 : 20, 1, 1e-2, 5e-3, 0.0, 0.5);
    }

    public OmniQuantConfig withEpochs(int e) {
        return new OmniQuantConfig(wbits, groupSize, abits, lwc, let, qkScale, e, batchSize, lwcLr, letLr, weightDecay, alpha);
    }

    public OmniQuantConfig withBatchSize(int b) {
        return new OmniQuantConfig(wbits, groupSize, abits, lwc, let, qkScale, epochs, b, lwcLr, letLr, weightDecay, alpha);
    }

    public IntQuantSpec weightSpec() {
        return new IntQuantSpec(wbits, groupSize, false);
    }
}
