package io.blockquant.model;

import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.FalconBlock;
import io.blockquant.nn.Linear;
import io.blockquant.nn.LlamaBlock;
import io.blockquant.nn.Norm;
import io.blockquant.nn.OptBlock;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.ArrayList;
import java.util.List;

/**
 * Builds the model's pieces from a checkpoint, one tensor at a time, checking every tensor's shape
 * against the spec. Blocks can be loaded on their own ({@link #block(int)}), so a calibration task holds
 * one block's weights, not the model's.
 */
public final class ModelLoader {

    private final WeightSource checkpoint;
    private final ModelSpec spec;
    private final TensorBackend be;
    private final String prefix;

    public ModelLoader(WeightSource checkpoint, ModelSpec spec, TensorBackend backend) {
        this.checkpoint = checkpoint;
        this.spec = spec;
        this.be = backend;
        this.prefix = prefix(checkpoint, spec);
    }

    /** The names' common prefix: {@code model.}, {@code model.decoder.} (or OPT's bare {@code decoder.}), {@code transformer.}. */
    private static String prefix(WeightSource checkpoint, ModelSpec spec) {
        return switch (spec.family()) {
            case LLAMA -> "model.";
            case OPT -> checkpoint.has("decoder.embed_tokens.weight") ? "decoder." : "model.decoder.";
            case FALCON -> "transformer.";
        };
    }

    public ModelSpec spec() {
        return spec;
    }

    /** The checkpoint name of block {@code i}'s module, e.g. {@code model.layers.3.self_attn.q_proj}. */
    public String blockPrefix(int i) {
        return switch (spec.family()) {
            case LLAMA -> prefix + "layers." + i + ".";
            case OPT -> prefix + "layers." + i + ".";
            case FALCON -> prefix + "h." + i + ".";
        };
    }

    public CausalLm model() {
        List<DecoderBlock> blocks = new ArrayList<>();
        for (int i = 0; i < spec.numLayers(); i++) blocks.add(block(i));
        return model(blocks);
    }

    /**
     * The model's embedding, final norm and head with no block loaded: what a calibration task needs to
     * embed windows, without holding every block's weights.
     */
    public CausalLm stem() {
        return model(List.of());
    }

    /** The checkpoint name of the token embedding table. */
    public String tokenEmbeddingName() {
        return switch (spec.family()) {
            case LLAMA, OPT -> prefix + "embed_tokens.weight";
            case FALCON -> prefix + "word_embeddings.weight";
        };
    }

    /**
     * The hidden states of {@code windows} entering block 0, {@code [batch·seq, hidden]}: exactly
     * {@link CausalLm#embed} of the whole model, but only the rows of the embedding table these windows use
     * are read (a real model's table is 0.5–4 GB), and the head is not loaded at all.
     */
    public Tensor embed(int[][] windows) {
        int dim = spec.family() == Family.OPT ? spec.projDim() : spec.hiddenSize();
        int seq = windows[0].length;
        int[] ids = new int[windows.length * seq];
        int[][] remapped = new int[windows.length][seq]; // row k of the gathered rows is token k of the batch
        for (int b = 0; b < windows.length; b++) {
            System.arraycopy(windows[b], 0, ids, b * seq, seq);
            for (int t = 0; t < seq; t++) remapped[b][t] = b * seq + t;
        }
        float[] rows = EmbeddingRows.gather(checkpoint.rows(tokenEmbeddingName(), spec.vocabSize(), dim), ids);
        Tensor table = be.fromFloats(rows, ids.length, dim);
        int h = spec.hiddenSize();
        Tensor positions = null;
        Linear in = null;
        if (spec.family() == Family.OPT) {
            positions = tensor(prefix + "embed_positions.weight", spec.maxPositions() + CausalLm.OPT_POSITION_OFFSET, h);
            if (dim != h) in = new Linear("project_in", tensor(prefix + "project_in.weight", h, dim), null);
        }
        return new CausalLm(spec, table, positions, in, List.of(), null, null, null).embed(remapped);
    }

    /**
     * Reads every tensor outside the blocks once, checking shapes and values as {@link #stem} would, but the
     * embedding and head by rows: nothing of their size is held.
     */
    public void checkStem() {
        int h = spec.hiddenSize(), vocab = spec.vocabSize();
        int dim = spec.family() == Family.OPT ? spec.projDim() : h;
        scanRows(tokenEmbeddingName(), vocab, dim);
        boolean tied = spec.family() == Family.OPT ? spec.tieWordEmbeddings() || !checkpoint.has("lm_head.weight")
                : spec.tieWordEmbeddings() && !checkpoint.has("lm_head.weight");
        if (!tied) scanRows("lm_head.weight", vocab, dim);
        switch (spec.family()) {
            case LLAMA -> tensor(prefix + "norm.weight", h);
            case OPT -> {
                tensor(prefix + "embed_positions.weight", spec.maxPositions() + CausalLm.OPT_POSITION_OFFSET, h);
                if (dim != h) {
                    tensor(prefix + "project_in.weight", h, dim);
                    tensor(prefix + "project_out.weight", dim, h);
                }
                if (spec.finalNorm()) layerNorm(prefix + "final_layer_norm", h);
            }
            case FALCON -> layerNorm(prefix + "ln_f", h);
        }
    }

    private void scanRows(String name, long rows, long cols) {
        TensorRows t = checkpoint.rows(name, rows, cols);
        int step = t.rowsPerRead(64L << 20);
        for (long r = 0; r < rows; r += step) t.readRows(r, (int) Math.min(step, rows - r));
    }

    /** True when {@code tensor} belongs to a transformer block (its name starts with a block's prefix). */
    public boolean isBlockTensor(String tensor) {
        String layers = blockPrefix(0);
        layers = layers.substring(0, layers.length() - 2); // "model.layers." without "0."
        if (!tensor.startsWith(layers)) return false;
        String rest = tensor.substring(layers.length());
        int dot = rest.indexOf('.');
        return dot > 0 && rest.substring(0, dot).chars().allMatch(Character::isDigit);
    }

    /**
     * The two vocabulary-sized tables: the token embedding and the output head ({@code [vocab, width]}, the
     * same tensor when the head is tied). A real model's are gigabytes each, so jobs read them by rows.
     *
     * @param width the embedding width: OPT's word_embed_proj_dim, else hidden
     */
    public record Tables(String embedding, String head, int vocab, int width) {
        public boolean tied() {
            return head.equals(embedding);
        }
    }

    public Tables tables() {
        return tables(checkpoint, spec);
    }

    /** {@link #tables()} without a loader: names and shapes only, nothing read. */
    public static Tables tables(WeightSource checkpoint, ModelSpec spec) {
        String prefix = prefix(checkpoint, spec);
        int vocab = spec.vocabSize();
        boolean hasHead = checkpoint.has("lm_head.weight");
        return switch (spec.family()) {
            case LLAMA -> new Tables(prefix + "embed_tokens.weight",
                    spec.tieWordEmbeddings() && !hasHead ? prefix + "embed_tokens.weight" : "lm_head.weight", vocab, spec.hiddenSize());
            case OPT -> new Tables(prefix + "embed_tokens.weight",
                    spec.tieWordEmbeddings() || !hasHead ? prefix + "embed_tokens.weight" : "lm_head.weight", vocab, spec.projDim());
            case FALCON -> new Tables(prefix + "word_embeddings.weight",
                    spec.tieWordEmbeddings() && !hasHead ? prefix + "word_embeddings.weight" : "lm_head.weight", vocab, spec.hiddenSize());
        };
    }

    /**
     * Everything outside the blocks except the two {@link #tables()} (null in the result): final norm, OPT's
     * learned positions and projections. What a block-by-block eval holds beside the table rows it reads.
     */
    public CausalLm stemWithoutTables() {
        return model(List.of(), false);
    }

    private CausalLm model(List<DecoderBlock> blocks) {
        return model(blocks, true);
    }

    private CausalLm model(List<DecoderBlock> blocks, boolean withTables) {
        int h = spec.hiddenSize();
        Tables t = tables();
        switch (spec.family()) {
            case LLAMA: {
                Tensor embed = table(t.embedding(), t, withTables);
                Tensor head = t.tied() ? embed : table(t.head(), t, withTables);
                return new CausalLm(spec, embed, null, null, blocks, Norm.rms(tensor(prefix + "norm.weight", h), spec.normEps()), null, head);
            }
            case OPT: {
                int p = spec.projDim();
                Tensor embed = table(t.embedding(), t, withTables);
                Tensor positions = tensor(prefix + "embed_positions.weight", spec.maxPositions() + CausalLm.OPT_POSITION_OFFSET, h);
                Linear in = p != h ? new Linear("project_in", tensor(prefix + "project_in.weight", h, p), null) : null;
                Linear out = p != h ? new Linear("project_out", tensor(prefix + "project_out.weight", p, h), null) : null;
                Norm fin = spec.finalNorm() ? layerNorm(prefix + "final_layer_norm", h) : null;
                Tensor head = t.tied() ? embed : table(t.head(), t, withTables);
                return new CausalLm(spec, embed, positions, in, blocks, fin, out, head);
            }
            case FALCON: {
                Tensor embed = table(t.embedding(), t, withTables);
                Tensor head = t.tied() ? embed : table(t.head(), t, withTables);
                return new CausalLm(spec, embed, null, null, blocks, layerNorm(prefix + "ln_f", h), null, head);
            }
            default:
                throw new AssertionError(spec.family());
        }
    }

    private Tensor table(String name, Tables t, boolean read) {
        return read ? tensor(name, t.vocab(), t.width()) : null;
    }

    public DecoderBlock block(int i) {
        if (i < 0 || i >= spec.numLayers()) {
            throw new IllegalArgumentException("block " + i + " outside 0.." + (spec.numLayers() - 1));
        }
        String p = blockPrefix(i);
        int h = spec.hiddenSize(), d = spec.headDim(), q = spec.numHeads() * d, kv = spec.numKvHeads() * d,
                ff = spec.intermediateSize();
        switch (spec.family()) {
            case LLAMA:
                return new LlamaBlock(spec, Norm.rms(tensor(p + "input_layernorm.weight", h), spec.normEps()),
                        linear(p, "self_attn.q_proj", q, h, spec.qkvBias()),
                        linear(p, "self_attn.k_proj", kv, h, spec.qkvBias()),
                        linear(p, "self_attn.v_proj", kv, h, spec.qkvBias()),
                        linear(p, "self_attn.o_proj", h, q, spec.outBias()),
                        Norm.rms(tensor(p + "post_attention_layernorm.weight", h), spec.normEps()),
                        linear(p, "mlp.gate_proj", ff, h, spec.mlpBias()),
                        linear(p, "mlp.up_proj", ff, h, spec.mlpBias()),
                        linear(p, "mlp.down_proj", h, ff, spec.mlpBias()));
            case OPT:
                return new OptBlock(spec, layerNorm(p + "self_attn_layer_norm", h),
                        linear(p, "self_attn.q_proj", h, h, spec.qkvBias()),
                        linear(p, "self_attn.k_proj", h, h, spec.qkvBias()),
                        linear(p, "self_attn.v_proj", h, h, spec.qkvBias()),
                        linear(p, "self_attn.out_proj", h, h, spec.outBias()),
                        layerNorm(p + "final_layer_norm", h),
                        linear(p, "fc1", ff, h, spec.mlpBias()),
                        linear(p, "fc2", h, ff, spec.mlpBias()));
            case FALCON: {
                Norm attnNorm, mlpNorm = null;
                if (spec.newFalconLayout() && spec.falconLayerNorms() == 2) {
                    attnNorm = layerNorm(p + "ln_attn", h);
                    mlpNorm = layerNorm(p + "ln_mlp", h);
                } else {
                    attnNorm = layerNorm(p + "input_layernorm", h);
                }
                return new FalconBlock(spec, attnNorm, mlpNorm,
                        linear(p, "self_attention.query_key_value", q + 2 * kv, h, spec.qkvBias()),
                        linear(p, "self_attention.dense", h, q, spec.outBias()),
                        linear(p, "mlp.dense_h_to_4h", ff, h, spec.mlpBias()),
                        linear(p, "mlp.dense_4h_to_h", h, ff, spec.mlpBias()));
            }
            default:
                throw new AssertionError(spec.family());
        }
    }

    private Linear linear(String blockPrefix, String module, int out, int in, boolean bias) {
        Tensor w = tensor(blockPrefix + module + ".weight", out, in);
        Tensor b = bias ? tensor(blockPrefix + module + ".bias", out) : null;
        return new Linear(module, w, b);
    }

    private Norm layerNorm(String name, int h) {
        return Norm.layer(tensor(name + ".weight", h), tensor(name + ".bias", h), spec.normEps());
    }

    private Tensor tensor(String name, long... shape) {
        return be.fromFloats(checkpoint.readFloats(name, shape), shape);
    }
}
