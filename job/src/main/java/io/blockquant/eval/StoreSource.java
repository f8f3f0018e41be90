package io.blockquant.eval;

import io.blockquant.model.ModelFormatException;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TensorRows;
import io.blockquant.model.WeightSource;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.schedule.BlockWork;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.StoreLayout;
import io.blockquant.store.StoreReader;
import io.blockquant.store.StoreTensors;
import io.blockquant.store.TensorRecord;
import io.blockquant.tensor.TensorBackend;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Function;
import java.util.stream.IntStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * A finished model store, read on executors without a SparkSession ({@link StoreTensors}): block i's rows
 * read and dequantized into a block as the checkpoint's would be built, block -1's small tensors read one
 * at a time, its embedding and head by rows (float32 stored whole, or the checkpoint's dtype in parts).
 *
 * @param root         the store, qualified
 * @param modelDir     the store's copy of the model's config and tokenizer
 * @param modelTensors the names of block -1's tensors, listed once on the driver (no data read)
 */
public record StoreSource(String root, String modelDir, List<String> modelTensors) implements ModelSource {

    /**
     * The finished store {@code reader} opened, checked on the driver before any task: its manifest lists every
     * block of the model, its block -1 names are plain tensor names (listed, no data read).
     */
    public static StoreSource of(StoreReader reader, Configuration conf) {
        int layers = ModelSpecReader.read(reader.modelDir(), conf).numLayers();
        List<Integer> blocks = reader.blocks();
        if (!blocks.equals(IntStream.range(0, layers).boxed().toList())) {
            throw new ModelFormatException(new Path(reader.root(), StoreLayout.MANIFEST) + ": lists blocks " + blocks
                    + ", the model (config.json) has blocks 0.." + (layers - 1));
        }
        Set<String> names = new TreeSet<>();
        for (StoreTensors.Info i : StoreTensors.list(conf, reader.root(), TensorRecord.MODEL_BLOCK)) {
            if (i.kind().equals("weight")) names.add(i.module());
        }
        return new StoreSource(reader.root().toString(), reader.modelDir().toString(), List.copyOf(names));
    }

    @Override
    public String workParent() {
        return new Path(root, StoreLayout.WORK).toString();
    }

    @Override
    public CausalLm stem(ModelSpec spec, TensorBackend be, Configuration conf) {
        return new ModelLoader(new ModelTensors(conf), spec, be).stemWithoutTables();
    }

    @Override
    public DecoderBlock block(ModelSpec spec, int i, TensorBackend be, Configuration conf) {
        Map<String, float[]> values = new HashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        BlockRecords.dequantize(StoreTensors.read(conf, new Path(root), i), "", values, shapes);
        return BlockWork.rebuild(spec, i, values, shapes, be);
    }

    @Override
    public <T> T withTable(ModelSpec spec, Table table, Configuration conf, Function<TensorRows, T> work) {
        ModelLoader.Tables t = ModelLoader.tables(new ModelTensors(conf), spec);
        TensorRows rows = StoreTensors.rows(conf, new Path(root), TensorRecord.MODEL_BLOCK,
                table == Table.HEAD ? t.head() : t.embedding(), "weight");
        if (rows.rows() != t.vocab() || rows.cols() != t.width()) {
            throw new ModelFormatException(rows.name() + " has shape [" + rows.rows() + ", " + rows.cols() + "], expected ["
                    + t.vocab() + ", " + t.width() + "] from config.json");
        }
        return work.apply(rows);
    }

    /** Block -1 as a {@link WeightSource}: its names from the driver's listing, each tensor read when asked for. */
    private final class ModelTensors implements WeightSource {

        private final Configuration conf;

        ModelTensors(Configuration conf) {
            this.conf = conf;
        }

        @Override
        public boolean has(String tensor) {
            return modelTensors.contains(tensor);
        }

        @Override
        public Set<String> tensorNames() {
            return new TreeSet<>(modelTensors);
        }

        @Override
        public float[] readFloats(String tensor, long... expectedShape) {
            TensorRecord t = StoreTensors.read(conf, new Path(root), TensorRecord.MODEL_BLOCK, tensor, "weight");
            if (expectedShape.length > 0 && !Arrays.equals(t.shape(), expectedShape)) {
                throw new ModelFormatException(root + ": " + t.describe() + " has shape " + Arrays.toString(t.shape())
                        + ", expected " + Arrays.toString(expectedShape) + " from config.json");
            }
            return t.toFloats();
        }
    }
}
