package io.blockquant.schedule;

import io.blockquant.algo.GptqConfig;
import io.blockquant.algo.OmniQuantConfig;
import io.blockquant.algo.LorcFactorFormat;
import io.blockquant.quant.FpFormat;
import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.IntQuantSpec;
import java.io.Serializable;

/**
 * What {@code quantize} does: the method and its parameters, resolved from flags and recipe files.
 *
 * @param method         "rtn", "gptq" or "omniquant"
 * @param activationBits per-token activation bits kept with the model (0 = none); recorded in the recipe
 * @param gptq           GPTQ's settings (method gptq), else null
 * @param omniquant      OmniQuant's settings (method omniquant), else null
 * @param fpWeights      ZeroQuant-FP weight format (FP4/FP8, scale constraint), else null for INT weights
 * @param activationFormat FP8 per-token activations, else null (INT per {@code activationBits}, or none)
 * @param lorcRank       LoRC rank (0: none)
 * @param lorcWeighted   LoRC's SVD weighted by the layer's input Hessian (the output error's best rank-r fix)
 *                       instead of the paper's plain SVD of the weight error
 * @param mode           "sequential" (block i calibrated on the quantized prefix's outputs, the papers' way) or
 *                       "parallel" (every block at once on the full-precision prefix's outputs)
 */
public record QuantizeSettings(String method, IntQuantSpec weights, int activationBits, GptqConfig gptq,
                               OmniQuantConfig omniquant, FpQuantSpec fpWeights, FpFormat activationFormat,
                               int lorcRank, LorcFactorFormat lorcFormat, boolean lorcWeighted, int nsamples, int seqlen, long seed,
                               int windowsPerTask, String mode) implements Serializable {

    public static final String SEQUENTIAL = "sequential";
    public static final String PARALLEL = "parallel";

    public QuantizeSettings {
        if (!mode.equals(SEQUENTIAL) && !mode.equals(PARALLEL)) {
            throw new IllegalArgumentException("--mode '" + mode + "' (expected sequential or parallel)");
        }
    }

    public boolean isParallel() {
        return mode.equals(PARALLEL);
    }

    /** Group sizes must divide every quantized layer's input width: checked before any work starts. */
    public void checkFits(io.blockquant.model.ModelSpec spec) {
        int g = weights.groupSize();
        if (g <= 0) return;
        for (int width : new int[] {spec.hiddenSize(), spec.intermediateSize(), spec.numHeads() * spec.headDim()}) {
            if (width % g != 0) {
                throw new IllegalArgumentException("--group " + g + " does not divide the input width " + width
                        + " of a linear layer of " + spec.describe() + "; choose a divisor of " + width);
            }
        }
    }

    public boolean isGptq() {
        return method.equals("gptq");
    }

    public boolean isOmniQuant() {
        return method.equals("omniquant");
    }

    public String label() {
        String w = fpWeights == null ? "W" + weights.bits() : "W" + weights.bits() + "-" + fpWeights.format();
        String a = activationFormat != null ? "A8-" + activationFormat : "A" + (activationBits == 0 ? 16 : activationBits);
        String base = method + " " + w + a + (weights.perChannel() ? " pc" : " g" + weights.groupSize())
                + (weights.symmetric() && fpWeights == null ? " sym" : "")
                + (fpWeights != null && fpWeights.constraint() != io.blockquant.quant.ScaleConstraint.NONE ? " " + fpWeights.constraint() : "")
                + (lorcRank > 0 ? " lorc" + lorcRank + (lorcWeighted ? "-hessian" : "") : "");
        if (isParallel()) base += " parallel";
        if (isGptq()) return base + (gptq.actOrder() ? " act-order" : "") + (gptq.staticGroups() ? " static-groups" : "");
        if (isOmniQuant()) {
            return base + (omniquant.lwc() ? " lwc" : "") + (omniquant.let() ? " let" : "") + " " + omniquant.epochs() + "ep";
        }
        return base;
    }

    /** The recipe as JSON, written into the store and printed at start. */
    public String toJson() {
        String omni = omniquant == null ? "null" : String.format(java.util.Locale.ROOT,
                "{\"lwc\": %s, \"let\": %s, \"epochs\": %d, \"batch_size\": %d, \"lwc_lr\": %s, \"let_lr\": %s, \"weight_decay\": %s}",
                omniquant.lwc(), omniquant.let(), omniquant.epochs(), omniquant.batchSize(), omniquant.lwcLr(),
                omniquant.letLr(), omniquant.weightDecay());
        return String.format(java.util.Locale.ROOT,
                "{\"method\": \"%s\", \"wbits\": %d, \"group\": %d, \"sym\": %s, \"abits\": %d, \"act_order\": %s, "
                        + "\"static_groups\": %s, \"damp\": %s, \"gptq_block\": %d, \"omniquant\": %s, \"nsamples\": %d, "
                        + "\"seqlen\": %d, \"seed\": %d, \"wformat\": \"%s\", \"aformat\": \"%s\", \"scale_constraint\": \"%s\", "
                        + "\"lorc_rank\": %d, \"lorc_format\": \"%s\", \"lorc_svd\": \"%s\", \"mode\": \"%s\"}",
                method, weights.bits(), Math.max(0, weights.groupSize()), weights.symmetric(), activationBits,
                gptq != null && gptq.actOrder(), gptq != null && gptq.staticGroups(),
                gptq == null ? "null" : String.valueOf(gptq.percDamp()), gptq == null ? 0 : gptq.blockSize(), omni,
                nsamples, seqlen, seed, fpWeights == null ? "int" : fpWeights.format().name().toLowerCase(java.util.Locale.ROOT),
                activationFormat == null ? "int" : activationFormat.name().toLowerCase(java.util.Locale.ROOT),
                fpWeights == null ? "none" : fpWeights.constraint().name().toLowerCase(java.util.Locale.ROOT), lorcRank,
                lorcFormat == null ? "none" : lorcFormat.name().toLowerCase(java.util.Locale.ROOT),
                lorcRank == 0 ? "none" : lorcWeighted ? "hessian" : "plain", mode);
    }
}
