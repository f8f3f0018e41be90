package io.blockquant.algo;

import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.quant.FakeQuantRecipe;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.IntQuantizer;
import io.blockquant.tensor.Tensor;

/**
 * Round-to-nearest: every linear layer inside the decoder blocks gets its weight fake-quantized
 * independently (no calibration data); embeddings and the head stay in full precision. With activation
 * quantization set, each such layer's input (and attention's Q, K, V or KV cache, when the recipe says so) is
 * quantized per token at run time as well.
 */
public final class RtnQuantizer {

    private RtnQuantizer() {}

    /**
     * A weight {@code [out, in]} rounded to nearest, in stored form (levels, scales, zeros, g_idx); its
     * {@link QuantizedLinear#dequantize()} equals the backend's {@code fakeQuantizeWeight} exactly.
     */
    public static QuantizedLinear quantize(Tensor weight, IntQuantSpec spec) {
        int rows = (int) weight.size(0), cols = (int) weight.size(1);
        int group = spec.perChannel() ? cols : spec.groupSize();
        if (cols % group != 0) {
            throw new IllegalArgumentException("group size " + group + " does not divide the input width " + cols);
        }
        int groups = cols / group, maxq = spec.maxLevel();
        float[] w = weight.toFloats();
        int[] levels = new int[rows * cols];
        float[] scales = new float[rows * groups], zeros = new float[rows * groups];
        int[] gIdx = new int[cols];
        for (int c = 0; c < cols; c++) gIdx[c] = c / group;
        for (int r = 0; r < rows; r++) {
            for (int g = 0; g < groups; g++) {
                int from = r * cols + g * group;
                IntQuantizer.Params p = IntQuantizer.params(w, from, from + group, spec.bits(), spec.symmetric());
                scales[r * groups + g] = p.scale();
                zeros[r * groups + g] = p.zero();
                for (int i = from; i < from + group; i++) levels[i] = IntQuantizer.level(w[i], p, maxq);
            }
        }
        return new QuantizedLinear(rows, cols, spec, groups, levels, scales, zeros, gIdx, 0);
    }

    public static Linear apply(Linear linear, FakeQuantRecipe recipe) {
        Linear out = linear;
        if (recipe.weights() != null) {
            out = out.withWeight(linear.weight().backend().fakeQuantizeWeight(linear.weight(), recipe.weights()));
        }
        return out.withInput(recipe.activations().linearInputs());
    }

    public static DecoderBlock apply(DecoderBlock block, FakeQuantRecipe recipe) {
        return recipe.isFullPrecision() ? block
                : block.mapLinears(l -> apply(l, recipe)).withAttnQuant(recipe.activations().attention());
    }

    public static CausalLm apply(CausalLm model, FakeQuantRecipe recipe) {
        if (recipe.isFullPrecision()) return model;
        return new CausalLm(model.spec(), model.tokenEmbedding(), model.positions(), model.projectIn(),
                model.blocks().stream().map(b -> apply(b, recipe)).toList(), model.finalNorm(), model.projectOut(), model.head());
    }
}
