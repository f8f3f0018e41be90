package io.blockquant.model.falcon;

import io.blockquant.model.ModelSpec;
import io.blockquant.nn.Attention;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.nn.Norm;
import io.blockquant.quant.AttentionQuant;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * Falcon block, attention and MLP in parallel: {@code y = x + dense(attn(ln_a(x))) + mlp(ln_m(x))}, where
 * {@code ln_m = ln_a} unless the grouped (40B/180B) layout has two norms. The fused
 * {@code query_key_value} projection stays one linear layer (as stored and as exported); its output
 * columns are split into q, k and v by the layout's column indices.
 */
public record FalconBlock(ModelSpec spec, Norm attnNorm, Norm mlpNorm, Linear qkv, Linear dense,
                          Linear up, Linear down, AttentionQuant attnQuant) implements DecoderBlock {

    public FalconBlock(ModelSpec spec, Norm attnNorm, Norm mlpNorm, Linear qkv, Linear dense, Linear up, Linear down) {
        this(spec, attnNorm, mlpNorm, qkv, dense, up, down, AttentionQuant.NONE);
    }

    @Override
    public Tensor forward(Tensor x, int batch, int seq) {
        TensorBackend be = x.backend();
        Tensor na = attnNorm.forward(x);
        Tensor nm = mlpNorm == null ? na : mlpNorm.forward(x);
        Tensor fused = qkv.forward(na);
        int[][] cols = qkvColumns(spec);
        Tensor attn = Attention.causal(be.selectColumns(fused, cols[0]), be.selectColumns(fused, cols[1]),
                be.selectColumns(fused, cols[2]), batch, seq, spec.numHeads(), spec.numKvHeads(), spec.headDim(),
                spec.invFreq(), attnQuant);
        Tensor mlp = down.forward(be.activate(up.forward(nm), spec.activation()));
        return be.add(be.add(x, dense.forward(attn)), mlp);
    }

    /**
     * Column indices of q, k and v in the fused projection's output. Hugging Face lays the fused output
     * out per kv group: the group's {@code heads/kvHeads} query heads, then its key, then its value. With
     * one kv group (Falcon-7B's multi-query) that is {@code [all q | k | v]}; with kvHeads = heads (old
     * layout without multi-query) it is {@code [q_h, k_h, v_h]} per head; Falcon-40B/180B sit in between.
     */
    public static int[][] qkvColumns(ModelSpec spec) {
        int d = spec.headDim(), h = spec.numHeads(), kv = spec.numKvHeads();
        int per = h / kv, stride = (per + 2) * d;
        int[] q = new int[h * d], k = new int[kv * d], v = new int[kv * d];
        for (int g = 0; g < kv; g++) {
            for (int j = 0; j < per * d; j++) q[g * per * d + j] = g * stride + j;
            for (int j = 0; j < d; j++) {
                k[g * d + j] = g * stride + per * d + j;
                v[g * d + j] = g * stride + (per + 1) * d + j;
            }
        }
        return new int[][] {q, k, v};
    }

    @Override
    public List<Linear> linears() {
        return List.of(qkv, dense, up, down);
    }

    @Override
    public FalconBlock mapLinears(UnaryOperator<Linear> f) {
        return new FalconBlock(spec, attnNorm, mlpNorm, f.apply(qkv), f.apply(dense), f.apply(up), f.apply(down), attnQuant);
    }

    @Override
    public FalconBlock withAttnQuant(AttentionQuant a) {
        return new FalconBlock(spec, attnNorm, mlpNorm, qkv, dense, up, down, a);
    }

    @Override
    public Map<String, Tensor> tensors() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        if (mlpNorm == null) {
            DecoderBlock.putNorm(out, "input_layernorm", attnNorm);
        } else { // the grouped (40B/180B) layout's two norms
            DecoderBlock.putNorm(out, "ln_attn", attnNorm);
            DecoderBlock.putNorm(out, "ln_mlp", mlpNorm);
        }
        for (Linear l : linears()) DecoderBlock.putLinear(out, l);
        return out;
    }
}
