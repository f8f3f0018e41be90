package io.blockquant.model;

import io.blockquant.algo.omniquant.BlockGraph;
import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.algo.omniquant.EquivalentTransform;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.nn.Norm;
import io.blockquant.tensor.Tensor;
import java.util.List;
import java.util.Map;

/**
 * Everything that differs between model families, in one place per family (its own package, registered in
 * {@link Family}): how its config.json reads, what its tensors are called, its block's forward (the block
 * class) and its true-sequential groups, and for OmniQuant its block's backward wiring and the pairs LET may
 * scale. The loader, the plan and OmniQuant ask the descriptor instead of switching on the family.
 */
public interface FamilyDescriptor {

    // ---- config.json

    /** config.json's {@code model_type} values this family reads, as the "supported" message names them. */
    List<String> modelTypes();

    /** Whether this family reads {@code modelType} (older spellings a family accepts but does not advertise). */
    default boolean reads(String modelType) {
        return modelTypes().contains(modelType);
    }

    /** The spec of a config.json whose {@code model_type} this family {@link #reads}. */
    ModelSpec spec(ModelSpecReader config, String modelType);

    // ---- tensor names

    /** What every name but the head's starts with in this checkpoint: {@code model.}, {@code transformer.}. */
    String namePrefix(WeightSource checkpoint);

    /** The blocks' names below the prefix, before the block index: {@code layers.}, {@code h.}. */
    String blocksPath();

    /** The token embedding's name below the prefix. */
    String tokenEmbeddingName();

    /** The output head's full name, when one is stored (Hugging Face's {@code lm_head} for every family so far). */
    default String headName() {
        return "lm_head.weight";
    }

    /** Whether the head is the token embedding, given the config and whether a head is stored: by default as the config says. */
    default boolean headTied(ModelSpec spec, boolean headStored) {
        return spec.tieWordEmbeddings() && !headStored;
    }

    /** The width of the embedding and head rows (OPT's word_embed_proj_dim, else hidden). */
    default int embeddingWidth(ModelSpec spec) {
        return spec.hiddenSize();
    }

    /** The model's tensors outside the blocks and the two tables: final norm, learned positions, projections. */
    record Stem(Tensor positions, Linear projectIn, Norm finalNorm, Linear projectOut) {}

    /** Reads the {@link Stem} below the prefix. */
    Stem stem(TensorReader tensors, ModelSpec spec);

    // ---- the block

    /**
     * The block's linear layers by module name in true-sequential groups: layers of a group read the same
     * input, so they share one Hessian. Flattened, the order of {@link DecoderBlock#linears()}.
     */
    List<List<String>> sequentialGroups();

    /** Reads one block below its prefix. */
    DecoderBlock block(TensorReader tensors, ModelSpec spec);

    /** A block of this family from its two norms (mlp null when the MLP reads the attention norm) and linears. */
    DecoderBlock block(ModelSpec spec, Norm attnNorm, Norm mlpNorm, List<Linear> linears);

    // ---- OmniQuant

    /** Where each projection role lives among {@link DecoderBlock#linears()} (absent roles left out). */
    Map<Proj, BlockGraph.Slot> slots(ModelSpec spec);

    /**
     * The block's training forward on {@code g}'s effective parameters, with its backward: the family's
     * residual and MLP wiring over {@link BlockGraph.Ops}' pieces.
     */
    BlockGraph.Pass trainingPass(BlockGraph.Ops g, Tensor x);

    /** The linears whose inputs LET's norm scale and shift fold into (eq. 4–5). */
    EquivalentTransform.NormReaders letNormReaders(ModelSpec spec);

    /** Whether the reference's recipe trains LET also for weight-only settings (its OPT scripts do). */
    boolean letInWeightOnly();

    /**
     * Whether the MLP multiplies its activated gate by a linear up projection, so that a scale on up's rows passes
     * to the down projection's input unchanged ({@code --let-down}).
     */
    boolean gatedMlp();
}
