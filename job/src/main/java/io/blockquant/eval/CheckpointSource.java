package io.blockquant.eval;

import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.TensorRows;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.TensorBackend;
import java.util.function.Function;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/** A Hugging Face checkpoint folder, opened by each task for the piece it needs (headers only; data on demand). */
public record CheckpointSource(String modelDir) implements ModelSource {

    @Override
    public String workParent() {
        return null;
    }

    @Override
    public CausalLm stem(ModelSpec spec, TensorBackend be, Configuration conf) {
        try (Checkpoint ckpt = open(conf)) {
            return new ModelLoader(ckpt, spec, be).stemWithoutTables();
        }
    }

    @Override
    public DecoderBlock block(ModelSpec spec, int i, TensorBackend be, Configuration conf) {
        try (Checkpoint ckpt = open(conf)) {
            return new ModelLoader(ckpt, spec, be).block(i);
        }
    }

    @Override
    public <T> T withTable(ModelSpec spec, Table table, Configuration conf, Function<TensorRows, T> work) {
        try (Checkpoint ckpt = open(conf)) {
            ModelLoader.Tables t = ModelLoader.tables(ckpt, spec);
            return work.apply(ckpt.rows(table == Table.HEAD ? t.head() : t.embedding(), t.vocab(), t.width()));
        }
    }

    private Checkpoint open(Configuration conf) {
        return Checkpoint.open(new Path(modelDir), conf);
    }
}
