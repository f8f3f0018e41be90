package io.blockquant.model.llama;

import io.blockquant.algo.omniquant.BlockGraph;
import io.blockquant.algo.omniquant.BlockGraph.Ops;
import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.algo.omniquant.BlockGraph.Slot;
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
import io.blockquant.tensor.Activation;
import io.blockquant.tensor.Tensor;
import java.util.List;
import java.util.Map;

/** Llama-1/2/3, Mistral, Qwen2: RMSNorm, RoPE, grouped-query attention, SwiGLU MLP, {@code model.layers.N.}. */
public final class LlamaFamily implements FamilyDescriptor {

    static final String Q = "self_attn.q_proj", K = "self_attn.k_proj", V = "self_attn.v_proj", O = "self_attn.o_proj",
            GATE = "mlp.gate_proj", UP = "mlp.up_proj", DOWN = "mlp.down_proj";

    @Override
    public List<String> modelTypes() {
        return List.of("llama", "mistral", "qwen2");
    }

    @Override
    public ModelSpec spec(ModelSpecReader c, String type) {
        int hidden = c.integer("hidden_size");
        int heads = c.integer("num_attention_heads");
        int kvHeads = c.optInt(heads, "num_key_value_heads");
        int headDim = c.has("head_dim") ? c.integer("head_dim") : c.divide(hidden, heads, "hidden_size", "num_attention_heads");
        c.checkGroups(heads, kvHeads, "num_key_value_heads");
        boolean attnBias = c.flag("attention_bias", false);
        String act = c.text("hidden_act", "silu");
        if (!act.equals("silu")) throw c.error("key 'hidden_act' is '" + act + "', expected 'silu' for " + type);
        return new ModelSpec(Family.LLAMA, type, hidden, c.integer("num_hidden_layers"), heads, kvHeads, headDim,
                c.integer("intermediate_size"), c.integer("vocab_size"), c.optInt(4096, "max_position_embeddings"),
                (float) c.number("rms_norm_eps"), Activation.SILU,
                type.equals("qwen2") || attnBias, attnBias, c.flag("mlp_bias", false),
                c.flag("tie_word_embeddings", false), c.ropeInvFreq(headDim), null);
    }

    @Override
    public String namePrefix(WeightSource checkpoint) {
        return "model.";
    }

    @Override
    public String blocksPath() {
        return "layers.";
    }

    @Override
    public String tokenEmbeddingName() {
        return "embed_tokens.weight";
    }

    @Override
    public Stem stem(TensorReader t, ModelSpec spec) {
        return new Stem(null, null, t.rmsNorm("norm", spec.hiddenSize(), spec.normEps()), null);
    }

    @Override
    public List<List<String>> sequentialGroups() {
        return List.of(List.of(Q, K, V), List.of(O), List.of(GATE, UP), List.of(DOWN));
    }

    @Override
    public DecoderBlock block(TensorReader t, ModelSpec s) {
        int h = s.hiddenSize(), q = s.numHeads() * s.headDim(), kv = s.numKvHeads() * s.headDim(), ff = s.intermediateSize();
        return new LlamaBlock(s, t.rmsNorm("input_layernorm", h, s.normEps()),
                t.linear(Q, q, h, s.qkvBias()), t.linear(K, kv, h, s.qkvBias()), t.linear(V, kv, h, s.qkvBias()),
                t.linear(O, h, q, s.outBias()),
                t.rmsNorm("post_attention_layernorm", h, s.normEps()),
                t.linear(GATE, ff, h, s.mlpBias()), t.linear(UP, ff, h, s.mlpBias()), t.linear(DOWN, h, ff, s.mlpBias()));
    }

    @Override
    public DecoderBlock block(ModelSpec s, Norm attnNorm, Norm mlpNorm, List<Linear> l) {
        return new LlamaBlock(s, attnNorm, l.get(0), l.get(1), l.get(2), l.get(3), mlpNorm, l.get(4), l.get(5), l.get(6));
    }

    @Override
    public Map<Proj, Slot> slots(ModelSpec spec) {
        return Map.of(Proj.Q, Slot.of(0), Proj.K, Slot.of(1), Proj.V, Slot.of(2), Proj.O, Slot.of(3),
                Proj.GATE, Slot.of(4), Proj.UP, Slot.of(5), Proj.DOWN, Slot.of(6));
    }

    /** {@code h = x + o(attn(norm(x)))}, {@code y = h + down(silu(gate(m)) ⊙ up(m))} with {@code m = norm(h)}. */
    @Override
    public BlockGraph.Pass trainingPass(Ops g, Tensor x) {
        return g.preNormResidual(x, g::gatedMlp);
    }

    @Override
    public NormReaders letNormReaders(ModelSpec spec) {
        return new NormReaders(List.of(Proj.Q, Proj.K, Proj.V), List.of(Proj.UP, Proj.GATE));
    }

    @Override
    public boolean letInWeightOnly() {
        return false;
    }

    @Override
    public boolean gatedMlp() {
        return true;
    }
}
