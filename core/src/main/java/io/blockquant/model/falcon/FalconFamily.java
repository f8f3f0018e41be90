package io.blockquant.model.falcon;

import io.blockquant.algo.omniquant.BlockGraph;
import io.blockquant.algo.omniquant.BlockGraph.Ops;
import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.algo.omniquant.BlockGraph.Slot;
import io.blockquant.algo.omniquant.BlockGraph.Step;
import io.blockquant.algo.omniquant.EquivalentTransform.NormReaders;
import io.blockquant.model.Family;
import io.blockquant.model.FamilyDescriptor;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TensorReader;
import io.blockquant.model.WeightSource;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.nn.Norm;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.List;
import java.util.Map;

/**
 * Falcon: attention and MLP in parallel from one LayerNorm (two in the grouped 40B/180B layout), multi-query
 * or grouped attention in one fused query_key_value, RoPE, GELU; names under {@code transformer.}, blocks
 * {@code h.N.}.
 */
public final class FalconFamily implements FamilyDescriptor {

    static final String QKV = "self_attention.query_key_value", DENSE = "self_attention.dense",
            UP = "mlp.dense_h_to_4h", DOWN = "mlp.dense_4h_to_h";

    @Override
    public List<String> modelTypes() {
        return List.of("falcon");
    }

    /** Also the model types of Falcon's first, remote-code releases. */
    @Override
    public boolean reads(String modelType) {
        return List.of("falcon", "RefinedWeb", "RefinedWebModel").contains(modelType);
    }

    @Override
    public ModelSpec spec(ModelSpecReader c, String type) {
        if (c.flag("alibi", false)) {
            throw c.error("key 'alibi' is true; Falcon with ALiBi positions is not supported (rotary only)");
        }
        int hidden = c.integer("hidden_size", "n_embed");
        int heads = c.integer("num_attention_heads", "n_head");
        int headDim = c.divide(hidden, heads, "hidden_size", "num_attention_heads");
        boolean newArch = c.flag("new_decoder_architecture", false);
        int kvHeads;
        if (newArch) {
            kvHeads = c.integer("num_kv_heads", "n_head_kv");
        } else {
            kvHeads = c.flag("multi_query", true) ? 1 : heads;
        }
        c.checkGroups(heads, kvHeads, "num_kv_heads");
        if (!newArch && !c.flag("parallel_attn", true)) {
            throw c.error("key 'parallel_attn' is false; only parallel attention/MLP Falcon blocks are supported");
        }
        int lnCount = 1;
        if (newArch) {
            lnCount = c.has("num_ln_in_parallel_attn") ? c.node("num_ln_in_parallel_attn").asInt() : 2;
            if (lnCount != 1 && lnCount != 2) {
                throw c.error("key 'num_ln_in_parallel_attn' is " + lnCount + ", expected 1 or 2");
            }
        }
        boolean bias = c.flag("bias", false);
        int ffn = c.has("ffn_hidden_size") ? c.integer("ffn_hidden_size") : 4 * hidden;
        return new ModelSpec(Family.FALCON, "falcon", hidden, c.integer("num_hidden_layers", "n_layer"), heads, kvHeads,
                headDim, ffn, c.integer("vocab_size"), c.optInt(2048, "max_position_embeddings"),
                (float) c.node("layer_norm_epsilon").asDouble(1e-5),
                c.activation(c.text("activation", "gelu"), "activation"),
                bias, bias, bias, c.flag("tie_word_embeddings", true), c.ropeInvFreq(headDim),
                new FalconFlags(newArch, lnCount));
    }

    @Override
    public String namePrefix(WeightSource checkpoint) {
        return "transformer.";
    }

    @Override
    public String blocksPath() {
        return "h.";
    }

    @Override
    public String tokenEmbeddingName() {
        return "word_embeddings.weight";
    }

    @Override
    public Stem stem(TensorReader t, ModelSpec spec) {
        return new Stem(null, null, t.layerNorm("ln_f", spec.hiddenSize(), spec.normEps()), null);
    }

    @Override
    public List<List<String>> sequentialGroups() {
        return List.of(List.of(QKV), List.of(DENSE), List.of(UP), List.of(DOWN));
    }

    /** Whether the block has its own MLP norm (ln_mlp): the grouped layout with two norms. */
    private static boolean twoNorms(ModelSpec spec) {
        FalconFlags f = FalconFlags.of(spec);
        return f.newLayout() && f.layerNorms() == 2;
    }

    @Override
    public DecoderBlock block(TensorReader t, ModelSpec s) {
        int h = s.hiddenSize(), q = s.numHeads() * s.headDim(), kv = s.numKvHeads() * s.headDim(), ff = s.intermediateSize();
        Norm attnNorm, mlpNorm = null;
        if (twoNorms(s)) {
            attnNorm = t.layerNorm("ln_attn", h, s.normEps());
            mlpNorm = t.layerNorm("ln_mlp", h, s.normEps());
        } else {
            attnNorm = t.layerNorm("input_layernorm", h, s.normEps());
        }
        return new FalconBlock(s, attnNorm, mlpNorm,
                t.linear(QKV, q + 2 * kv, h, s.qkvBias()), t.linear(DENSE, h, q, s.outBias()),
                t.linear(UP, ff, h, s.mlpBias()), t.linear(DOWN, h, ff, s.mlpBias()));
    }

    @Override
    public DecoderBlock block(ModelSpec s, Norm attnNorm, Norm mlpNorm, List<Linear> l) {
        return new FalconBlock(s, attnNorm, mlpNorm, l.get(0), l.get(1), l.get(2), l.get(3));
    }

    /** q, k and v are row subsets of the fused query_key_value. */
    @Override
    public Map<Proj, Slot> slots(ModelSpec spec) {
        int[][] cols = FalconBlock.qkvColumns(spec);
        return Map.of(Proj.Q, new Slot(0, cols[0]), Proj.K, new Slot(0, cols[1]), Proj.V, new Slot(0, cols[2]),
                Proj.O, Slot.of(1), Proj.UP, Slot.of(2), Proj.DOWN, Slot.of(3));
    }

    /** {@code y = x + mlp(m) + dense(attn(n))}, {@code n = ln_attn(x)}, {@code m = ln_mlp(x)} or n. */
    @Override
    public BlockGraph.Pass trainingPass(Ops g, Tensor x) {
        TensorBackend be = x.backend();
        Step attnNorm = g.attnNorm(x);
        Step nq = g.quantIn(attnNorm.output());
        Step attn = g.attention(nq.output());
        Step mlpNorm = g.hasMlpNorm() ? g.mlpNorm(x) : null;
        Step mq = mlpNorm == null ? nq : g.quantIn(mlpNorm.output());
        Step mlp = g.mlp(mq.output());
        return new BlockGraph.Pass(be.add(be.add(x, mlp.output()), attn.output()), dy -> {
            Tensor dm = mlp.backward(dy);
            if (mlpNorm != null) mlpNorm.backward(mq.backward(dm)); // its input gradient (at x) is not needed
            Tensor dn = attn.backward(dy);
            attnNorm.backward(nq.backward(mlpNorm == null ? be.add(dn, dm) : dn));
        });
    }

    /** One norm feeds both query_key_value and dense_h_to_4h, so one (s, δ) scales both. */
    @Override
    public NormReaders letNormReaders(ModelSpec spec) {
        return twoNorms(spec) ? new NormReaders(List.of(Proj.Q, Proj.K, Proj.V), List.of(Proj.UP))
                : new NormReaders(List.of(Proj.Q, Proj.K, Proj.V, Proj.UP), List.of());
    }

    @Override
    public boolean letInWeightOnly() {
        return false;
    }

    @Override
    public boolean gatedMlp() {
        return false;
    }
}
