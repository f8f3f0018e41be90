package io.blockquant.model.opt;

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
import io.blockquant.tensor.Tensor;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * OPT: LayerNorm, learned positions, biases everywhere, ReLU, tied head; names under {@code model.decoder.}
 * (or a bare {@code decoder.}), blocks {@code layers.N.}.
 */
public final class OptFamily implements FamilyDescriptor {

    /** The learned position table's first used row (a fairseq legacy): rows before it are dropped at load. */
    static final int POSITION_OFFSET = 2;

    static final String Q = "self_attn.q_proj", K = "self_attn.k_proj", V = "self_attn.v_proj", OUT = "self_attn.out_proj",
            FC1 = "fc1", FC2 = "fc2";

    @Override
    public List<String> modelTypes() {
        return List.of("opt");
    }

    @Override
    public ModelSpec spec(ModelSpecReader c, String type) {
        int hidden = c.integer("hidden_size");
        int heads = c.integer("num_attention_heads");
        int headDim = c.divide(hidden, heads, "hidden_size", "num_attention_heads");
        boolean bias = c.flag("enable_bias", true);
        boolean before = c.flag("do_layer_norm_before", true);
        boolean finalNorm = before && !c.flag("_remove_final_layer_norm", false);
        if (!c.flag("layer_norm_elementwise_affine", true)) {
            throw c.error("key 'layer_norm_elementwise_affine' is false; only affine LayerNorms are supported");
        }
        return new ModelSpec(Family.OPT, "opt", hidden, c.integer("num_hidden_layers"), heads, heads, headDim,
                c.integer("ffn_dim"), c.integer("vocab_size"), c.integer("max_position_embeddings"), 1e-5f,
                c.activation(c.text("activation_function", "relu"), "activation_function"),
                bias, bias, bias, c.flag("tie_word_embeddings", true), null,
                new OptFlags(before, finalNorm, c.optInt(hidden, "word_embed_proj_dim")));
    }

    @Override
    public String namePrefix(WeightSource checkpoint) {
        return checkpoint.has("decoder.embed_tokens.weight") ? "decoder." : "model.decoder.";
    }

    @Override
    public String blocksPath() {
        return "layers.";
    }

    @Override
    public String tokenEmbeddingName() {
        return "embed_tokens.weight";
    }

    /** Tied unless the config unties it and a head is stored. */
    @Override
    public boolean headTied(ModelSpec spec, boolean headStored) {
        return spec.tieWordEmbeddings() || !headStored;
    }

    @Override
    public int embeddingWidth(ModelSpec spec) {
        return OptFlags.of(spec).projDim();
    }

    @Override
    public Stem stem(TensorReader t, ModelSpec spec) {
        int h = spec.hiddenSize(), p = OptFlags.of(spec).projDim(), rows = spec.maxPositions();
        float[] table = t.floats("embed_positions.weight", rows + POSITION_OFFSET, h);
        Tensor positions = t.backend().fromFloats(Arrays.copyOfRange(table, POSITION_OFFSET * h, table.length), rows, h);
        Linear in = p != h ? new Linear("project_in", t.tensor("project_in.weight", h, p), null) : null;
        Linear out = p != h ? new Linear("project_out", t.tensor("project_out.weight", p, h), null) : null;
        Norm fin = OptFlags.of(spec).finalNorm() ? t.layerNorm("final_layer_norm", h, spec.normEps()) : null;
        return new Stem(positions, in, fin, out);
    }

    @Override
    public List<List<String>> sequentialGroups() {
        return List.of(List.of(Q, K, V), List.of(OUT), List.of(FC1), List.of(FC2));
    }

    @Override
    public DecoderBlock block(TensorReader t, ModelSpec s) {
        int h = s.hiddenSize(), ff = s.intermediateSize();
        return new OptBlock(s, t.layerNorm("self_attn_layer_norm", h, s.normEps()),
                t.linear(Q, h, h, s.qkvBias()), t.linear(K, h, h, s.qkvBias()), t.linear(V, h, h, s.qkvBias()),
                t.linear(OUT, h, h, s.outBias()),
                t.layerNorm("final_layer_norm", h, s.normEps()),
                t.linear(FC1, ff, h, s.mlpBias()), t.linear(FC2, h, ff, s.mlpBias()));
    }

    @Override
    public DecoderBlock block(ModelSpec s, Norm attnNorm, Norm mlpNorm, List<Linear> l) {
        return new OptBlock(s, attnNorm, l.get(0), l.get(1), l.get(2), l.get(3), mlpNorm, l.get(4), l.get(5));
    }

    @Override
    public Map<Proj, Slot> slots(ModelSpec spec) {
        return Map.of(Proj.Q, Slot.of(0), Proj.K, Slot.of(1), Proj.V, Slot.of(2), Proj.O, Slot.of(3),
                Proj.UP, Slot.of(4), Proj.DOWN, Slot.of(5));
    }

    /** Pre-LN: {@code h = x + out(attn(ln1(x)))}, {@code y = h + fc2(act(fc1(ln2(h))))}. */
    @Override
    public BlockGraph.Pass trainingPass(Ops g, Tensor x) {
        if (!OptFlags.of(g.spec()).normBefore()) {
            // bad input, not a bug: one line naming the config key and what to run instead
            throw new IllegalArgumentException("--method omniquant does not train post-LayerNorm OPT blocks (config.json "
                    + "do_layer_norm_before = false, as OPT-350m); quantize this model with --method gptq or rtn");
        }
        return g.preNormResidual(x, g::mlp);
    }

    @Override
    public NormReaders letNormReaders(ModelSpec spec) {
        return new NormReaders(List.of(Proj.Q, Proj.K, Proj.V), List.of(Proj.UP));
    }

    /** The reference's OPT scripts train LET at weight-only settings too. */
    @Override
    public boolean letInWeightOnly() {
        return true;
    }

    @Override
    public boolean gatedMlp() {
        return false;
    }
}
