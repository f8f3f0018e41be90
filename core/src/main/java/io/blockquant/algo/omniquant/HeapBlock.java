package io.blockquant.algo.omniquant;

import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.model.ModelSpec;
import io.blockquant.algo.omniquant.BlockGraph.Slot;
import io.blockquant.model.FamilyDescriptor;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.nn.Norm;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A decoder block's parameters as heap arrays, family-neutral: two norms (the MLP norm absent when the MLP
 * reads the attention norm, as in Falcon-7B), the stored linear layers in {@link DecoderBlock#linears()}
 * order, and where each {@link Proj} lives among them (the family's {@link FamilyDescriptor#slots}: Falcon's
 * q, k, v are row subsets of the fused query_key_value). Converts back into an ordinary {@link DecoderBlock}.
 */
public final class HeapBlock {

    /** One stored linear layer, {@code w [out, in]} row-major, {@code b} null when it has none. */
    public record Layer(String name, int out, int in, float[] w, float[] b) {}

    /** A norm's weight and bias (bias null for RMSNorm). */
    public record NormParams(float[] w, float[] b) {}

    public final ModelSpec spec;
    public final boolean rms;
    public final float eps;
    public final NormParams attnNorm, mlpNorm;
    public final List<Layer> layers;
    /** Stored layer of each projection (−1 when absent) and its rows there (null: all rows). */
    public final int[] layerOf = new int[Proj.values().length];
    public final int[][] rowsOf = new int[Proj.values().length][];

    private HeapBlock(ModelSpec spec, boolean rms, float eps, NormParams attnNorm, NormParams mlpNorm, List<Layer> layers) {
        this.spec = spec;
        this.rms = rms;
        this.eps = eps;
        this.attnNorm = attnNorm;
        this.mlpNorm = mlpNorm;
        this.layers = layers;
        java.util.Arrays.fill(layerOf, -1);
    }

    public HeapBlock withParams(NormParams attn, NormParams mlp, List<Layer> newLayers) {
        HeapBlock h = new HeapBlock(spec, rms, eps, attn, mlp, newLayers);
        System.arraycopy(layerOf, 0, h.layerOf, 0, layerOf.length);
        System.arraycopy(rowsOf, 0, h.rowsOf, 0, rowsOf.length);
        return h;
    }

    public int hidden() {
        return spec.hiddenSize();
    }

    public Layer layer(Proj p) {
        return layerOf[p.ordinal()] < 0 ? null : layers.get(layerOf[p.ordinal()]);
    }

    public static HeapBlock of(DecoderBlock block) {
        List<Layer> layers = new ArrayList<>();
        for (Linear l : block.linears()) {
            layers.add(new Layer(l.name(), l.outFeatures(), l.inFeatures(), l.weight().toFloats(),
                    l.bias() == null ? null : l.bias().toFloats()));
        }
        Norm attn = block.attnNorm(), mlp = block.mlpNorm();
        HeapBlock h = new HeapBlock(block.spec(), attn.rms(), attn.eps(), norm(attn), mlp == null ? null : norm(mlp), layers);
        for (Map.Entry<Proj, Slot> e : block.spec().family().descriptor().slots(block.spec()).entrySet()) {
            h.layerOf[e.getKey().ordinal()] = e.getValue().layer();
            h.rowsOf[e.getKey().ordinal()] = e.getValue().rows();
        }
        if (h.attnNorm.b() == null && !h.rms) throw new IllegalArgumentException("LayerNorm without a bias is not supported");
        return h;
    }

    /** The name of the linear holding projection {@code p} in {@code block} (null when absent), without copying weights. */
    public static String name(DecoderBlock block, Proj p) {
        Slot slot = block.spec().family().descriptor().slots(block.spec()).get(p);
        return slot == null ? null : block.linears().get(slot.layer()).name();
    }

    private static NormParams norm(Norm n) {
        return new NormParams(n.weight().toFloats(), n.bias() == null ? null : n.bias().toFloats());
    }

    /** Rows {@code rows} of a row-major {@code [*, in]} array (all of it when rows is null). */
    public static float[] selectRows(float[] a, int in, int[] rows) {
        if (rows == null) return a;
        float[] out = new float[rows.length * in];
        for (int i = 0; i < rows.length; i++) System.arraycopy(a, rows[i] * in, out, i * in, in);
        return out;
    }

    /** Adds {@code part} (rows {@code rows} of a {@code [*, in]} array) into {@code into}. */
    public static void addRows(float[] into, float[] part, int in, int[] rows) {
        if (rows == null) {
            for (int i = 0; i < part.length; i++) into[i] += part[i];
            return;
        }
        for (int i = 0; i < rows.length; i++) {
            int dst = rows[i] * in, src = i * in;
            for (int j = 0; j < in; j++) into[dst + j] += part[src + j];
        }
    }

    /** The projection's weight and bias as backend tensors, from per-layer arrays {@code ws}, {@code bs}. */
    public BlockGraph.Params graphParams(TensorBackend be, NormParams attn, NormParams mlp, float[][] ws, float[][] bs) {
        Tensor[] w = new Tensor[Proj.values().length], b = new Tensor[Proj.values().length];
        for (Proj p : Proj.values()) {
            int li = layerOf[p.ordinal()];
            if (li < 0) continue;
            Layer l = layers.get(li);
            int[] rows = rowsOf[p.ordinal()];
            int out = rows == null ? l.out() : rows.length;
            w[p.ordinal()] = be.fromFloats(selectRows(ws[li], l.in(), rows), out, l.in());
            if (bs[li] != null) b[p.ordinal()] = be.fromFloats(selectRows(bs[li], 1, rows), out);
        }
        int h = hidden();
        return new BlockGraph.Params(be.fromFloats(attn.w(), h), attn.b() == null ? null : be.fromFloats(attn.b(), h),
                mlp == null ? null : be.fromFloats(mlp.w(), h),
                mlp == null || mlp.b() == null ? null : be.fromFloats(mlp.b(), h), w, b);
    }

    /** An ordinary block from norms and per-layer weights/biases, quantizing activations as {@code acts} says. */
    public DecoderBlock toBlock(TensorBackend be, NormParams attn, NormParams mlp, float[][] ws, float[][] bs, ActivationQuant acts) {
        List<Linear> ls = new ArrayList<>();
        for (int i = 0; i < layers.size(); i++) {
            Layer l = layers.get(i);
            Linear lin = new Linear(l.name(), be.fromFloats(ws[i], l.out(), l.in()),
                    bs[i] == null ? null : be.fromFloats(bs[i], l.out()));
            ls.add(lin.withInput(acts.linearInputs()));
        }
        int h = hidden();
        Norm na = rms ? Norm.rms(be.fromFloats(attn.w(), h), eps) : Norm.layer(be.fromFloats(attn.w(), h), be.fromFloats(attn.b(), h), eps);
        Norm nm = mlp == null ? null : rms ? Norm.rms(be.fromFloats(mlp.w(), h), eps)
                : Norm.layer(be.fromFloats(mlp.w(), h), be.fromFloats(mlp.b(), h), eps);
        return spec.family().descriptor().block(spec, na, nm, ls).withAttnQuant(acts.attention());
    }
}
