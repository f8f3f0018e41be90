package io.blockquant.algo;

import io.blockquant.model.Family;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.quant.IntQuantSpec;
import java.io.Serializable;

/**
 * OmniQuant's settings for one run (defaults from the reference, OpenGVLab/OmniQuant {@code main.py} and its
 * scripts): weight bits and group size (≤ 0: per output channel), the activation quantization training sees and
 * the folded block keeps ({@link ActivationQuant}: none for weight-only), LWC, LET (with shifts where the block
 * allows them and activations are quantized; the query/key scale when {@code qkScale}), AdamW learning rates for
 * LWC (1e-2) and LET (5e-3), weight decay (0), epochs, windows per step, SmoothQuant's migration strength
 * α = 0.5 for the LET scale's start, and the reference's {@code --aug_loss} (off by default): the loss adds the
 * distance to the full-precision block's outputs on the quantized inputs to the one to the targets.
 * {@code letDown} (off by default, not the reference's) adds a LET scale the reference has no place for: between a
 * gated MLP's up projection and its down projection (AWQ's up→down pair), so the down projection's input is
 * smoothed too.
 */
public record OmniQuantConfig(int wbits, int groupSize, ActivationQuant activations, boolean lwc, boolean let, boolean qkScale,
                              boolean letDown, int epochs, int batchSize, double lwcLr, double letLr, double weightDecay,
                              double alpha, boolean augLoss) implements Serializable {

    public OmniQuantConfig {
        if (activations == null) throw new IllegalArgumentException("activations: use ActivationQuant.NONE for weight-only");
        if (epochs < 0) throw new IllegalArgumentException("epochs must be ≥ 0, got " + epochs);
        if (batchSize < 1) throw new IllegalArgumentException("batch size must be ≥ 1, got " + batchSize);
        if (qkScale && !quantizesQueryKey(activations)) {
            throw new IllegalArgumentException("the query/key scale needs quantized queries and keys (--quant-attn)");
        }
        if (letDown && !let) throw new IllegalArgumentException("--let-down is a LET scale: it needs --let");
        if (!(alpha >= 0 && alpha <= 1)) throw new IllegalArgumentException("--alpha must be in [0, 1], got " + alpha);
        new IntQuantSpec(wbits, groupSize, false); // checks the bits
    }

    /** The linears' input bits, 16 when they are not quantized (weight-only). */
    public int abits() {
        return activations.linearInputs() == null ? 16 : activations.linearInputs().bits();
    }

    /**
     * The reference's recipe for a setting: 20 epochs (40 at 2 bits), LWC always, LET for
     * weight-activation settings and, where the family says so ({@code letInWeightOnly}: OPT), also
     * weight-only, one window per step, and the activations of {@link ActivationQuant#referenceRule}.
     */
    public static OmniQuantConfig of(Family family, int wbits, int groupSize, int abits) {
        boolean ref = ActivationQuant.referenceRule(abits);
        return of(family, wbits, groupSize, abits >= 16 ? ActivationQuant.NONE : ActivationQuant.of(abits, null, ref, ref, 0, null));
    }

    /**
     * As above for given activations. The query/key scale (eq. 6) is learned exactly when queries and keys are
     * quantized: otherwise row-wise weight quantization is equivariant to scaling a row, so the scale cannot
     * change the loss (its gradient is zero); the reference's QuantMatMul quantizes them, and so does
     * {@code --quant-attn}.
     */
    public static OmniQuantConfig of(Family family, int wbits, int groupSize, ActivationQuant acts) {
        boolean wa = acts.linearInputs() != null;
        boolean let = wa || family.descriptor().letInWeightOnly();
        return new OmniQuantConfig(wbits, groupSize, acts, true, let, let && quantizesQueryKey(acts), false,
                wbits <= 2 ? 40 : 20, 1, 1e-2, 5e-3, 0.0, 0.5, false);
    }

    static boolean quantizesQueryKey(ActivationQuant acts) {
        return acts.attention().query() != null && acts.attention().key() != null;
    }

    public OmniQuantConfig withEpochs(int e) {
        return new OmniQuantConfig(wbits, groupSize, activations, lwc, let, qkScale, letDown, e, batchSize, lwcLr, letLr, weightDecay, alpha, augLoss);
    }

    public OmniQuantConfig withBatchSize(int b) {
        return new OmniQuantConfig(wbits, groupSize, activations, lwc, let, qkScale, letDown, epochs, b, lwcLr, letLr, weightDecay, alpha, augLoss);
    }

    public IntQuantSpec weightSpec() {
        return new IntQuantSpec(wbits, groupSize, false);
    }
}
