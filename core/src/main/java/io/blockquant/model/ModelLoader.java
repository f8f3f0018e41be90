package io.blockquant.model;

import io.blockquant.model.FamilyDescriptor.Stem;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.ArrayList;
import java.util.List;

/**
 * Builds the model's pieces from a checkpoint, one tensor at a time, checking every tensor's shape
 * against the spec. Blocks can be loaded on their own ({@link #block(int)}), so a calibration task holds
 * one block's weights, not the model's. Names and layouts come from the spec's {@link FamilyDescriptor}.
 */
public final class ModelLoader {

    private final WeightSource checkpoint;
    private final ModelSpec spec;
    private final FamilyDescriptor family;
    private final TensorBackend be;
    private final String prefix;

    /**
     * A loader asked only for tensor names and prefixes (export, the store's own tensors): it has no backend,
     * so no backend's classes (ND4J's natives) are loaded for it; reading a tensor through it is a bug.
     */
    public static ModelLoader forNames(WeightSource checkpoint, ModelSpec spec) {
        return new ModelLoader(checkpoint, spec, null);
    }

    public ModelLoader(WeightSource checkpoint, ModelSpec spec, TensorBackend backend) {
        this.checkpoint = checkpoint;
        this.spec = spec;
        this.family = spec.family().descriptor();
        this.be = backend;
        this.prefix = family.namePrefix(checkpoint);
    }

    private TensorBackend backend() {
        if (be == null) throw new IllegalStateException("a ModelLoader.forNames loader reads no tensor");
        return be;
    }

    public ModelSpec spec() {
        return spec;
    }

    /** The checkpoint name of block {@code i}'s module, e.g. {@code model.layers.3.self_attn.q_proj}. */
    public String blockPrefix(int i) {
        return prefix + family.blocksPath() + i + ".";
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
        return prefix + family.tokenEmbeddingName();
    }

    /**
     * The hidden states of {@code windows} entering block 0, {@code [batch·seq, hidden]}: exactly
     * {@link CausalLm#embed} of the whole model, but only the rows of the embedding table these windows use
     * are read (a real model's table is 0.5–4 GB), and the head is not loaded at all.
     */
    public Tensor embed(int[][] windows) {
        int dim = family.embeddingWidth(spec);
        int seq = windows[0].length;
        int[] ids = new int[windows.length * seq];
        int[][] remapped = new int[windows.length][seq]; // row k of the gathered rows is token k of the batch
        for (int b = 0; b < windows.length; b++) {
            System.arraycopy(windows[b], 0, ids, b * seq, seq);
            for (int t = 0; t < seq; t++) remapped[b][t] = b * seq + t;
        }
        float[] rows = EmbeddingRows.gather(checkpoint.rows(tokenEmbeddingName(), spec.vocabSize(), dim), ids);
        Tensor table = backend().fromFloats(rows, ids.length, dim);
        Stem stem = family.stem(tensors(), spec);
        return new CausalLm(spec, table, stem.positions(), stem.projectIn(), List.of(), null, null, null).embed(remapped);
    }

    /**
     * Reads every tensor outside the blocks once, checking shapes and values as {@link #stem} would, but the
     * embedding and head by rows: nothing of their size is held.
     */
    public void checkStem() {
        Tables t = tables();
        scanRows(t.embedding(), t.vocab(), t.width());
        if (!t.tied()) scanRows(t.head(), t.vocab(), t.width());
        family.stem(tensors(), spec);
    }

    private void scanRows(String name, long rows, long cols) {
        TensorRows t = checkpoint.rows(name, rows, cols);
        int step = t.rowsPerRead(64L << 20);
        for (long r = 0; r < rows; r += step) t.readRows(r, (int) Math.min(step, rows - r));
    }

    /** True when {@code tensor} belongs to a transformer block (its name starts with a block's prefix). */
    public boolean isBlockTensor(String tensor) {
        String layers = prefix + family.blocksPath();
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
        FamilyDescriptor family = spec.family().descriptor();
        String embedding = family.namePrefix(checkpoint) + family.tokenEmbeddingName();
        boolean tied = family.headTied(spec, checkpoint.has(family.headName()));
        return new Tables(embedding, tied ? embedding : family.headName(), spec.vocabSize(), family.embeddingWidth(spec));
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
        Tables t = tables();
        Tensor embed = withTables ? backend().fromFloats(checkpoint.readFloats(t.embedding(), t.vocab(), t.width()), t.vocab(), t.width()) : null;
        Stem stem = family.stem(tensors(), spec);
        Tensor head = t.tied() ? embed
                : withTables ? backend().fromFloats(checkpoint.readFloats(t.head(), t.vocab(), t.width()), t.vocab(), t.width()) : null;
        return new CausalLm(spec, embed, stem.positions(), stem.projectIn(), blocks, stem.finalNorm(), stem.projectOut(), head);
    }

    public DecoderBlock block(int i) {
        if (i < 0 || i >= spec.numLayers()) {
            throw new IllegalArgumentException("block " + i + " outside 0.." + (spec.numLayers() - 1));
        }
        return family.block(tensors().under(family.blocksPath() + i + "."), spec);
    }

    /** The checkpoint's tensors below the family's name prefix. */
    private TensorReader tensors() {
        return new TensorReader(checkpoint, backend(), prefix);
    }
}
