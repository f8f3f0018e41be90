package io.blockquant.eval;

import io.blockquant.model.ModelSpec;
import io.blockquant.model.TensorRows;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.TensorBackend;
import java.io.Serializable;
import java.util.function.Function;
import org.apache.hadoop.conf.Configuration;

/**
 * The model an eval scores, as executor tasks read it: piece by piece, never whole, so no JVM holds more
 * than one block. A checkpoint folder ({@link CheckpointSource}) or a finished model store
 * ({@link StoreSource}, its quantized blocks dequantized).
 */
public interface ModelSource extends Serializable {

    /** The vocabulary-sized tables, read by rows. */
    enum Table { EMBEDDING, HEAD }

    /** The folder holding the model's config.json and tokenizer. */
    String modelDir();

    /** Where a run's work folder goes when none is given (a store's own {@code _work}); null: no place of its own. */
    String workParent();

    /** Final norm, OPT's positions and projections: the model without blocks and without its two tables. */
    CausalLm stem(ModelSpec spec, TensorBackend be, Configuration conf);

    /** Block {@code i} as the source holds it: a checkpoint's weights, a store's dequantized ones. */
    DecoderBlock block(ModelSpec spec, int i, TensorBackend be, Configuration conf);

    /**
     * {@code work} applied to the token embedding or the output head (the embedding when tied) read by rows,
     * its shape checked against the config ({@code [vocab, width]}); open only while {@code work} runs.
     */
    <T> T withTable(ModelSpec spec, Table table, Configuration conf, Function<TensorRows, T> work);
}
