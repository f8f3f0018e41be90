package io.blockquant.export;

import io.blockquant.export.ShardPlan.Layer;
import io.blockquant.export.ShardPlan.Planned;
import io.blockquant.export.ShardPlan.Shard;
import io.blockquant.export.ShardPlan.Stored;
import io.blockquant.model.DType;
import io.blockquant.model.LocalDisk;
import io.blockquant.model.SafetensorsWriter;
import io.blockquant.model.SafetensorsWriter.Tensor;
import io.blockquant.spark.HadoopConf;
import io.blockquant.store.StoreTensors;
import io.blockquant.store.TensorRecord;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.function.Function;

/**
 * Writes one shard of an export, on an executor: the header from the plan first, then each tensor as it is
 * made from the store. A block's quantized layers are converted from the block read once, and the block is
 * dropped when the shard moves on to the next one; the full-precision tensors of block -1 (embedding, head:
 * 1–4 GB each in a real model) are copied one stored part (≤ 16 MiB) at a time. So a task holds at most one
 * block, and no tensor passes through the driver.
 */
final class ShardTask implements Function<Integer, List<AddedError>> {
    private static final long serialVersionUID = 1L;

    /** The safetensors metadata transformers requires ({@code format: pt}). */
    static final Map<String, String> METADATA = Map.of("format", "pt");

    private final HadoopConf conf;
    private final String store;
    private final String dir;
    private final LayerLayout layout;
    private final List<Shard> shards;

    /** Shards of {@code shards} by index, from store {@code store} into folder {@code dir}. */
    ShardTask(Configuration conf, Path store, Path dir, LayerLayout layout, List<Shard> shards) {
        this.conf = new HadoopConf(conf);
        this.store = store.toString();
        this.dir = dir.toString();
        this.layout = layout;
        this.shards = List.copyOf(shards);
    }

    /** Writes shard {@code index}; returns the added error of each layer it converted (empty where the layout is exact). */
    @Override
    public List<AddedError> call(Integer index) {
        return write(shards.get(index));
    }

    private List<AddedError> write(Shard shard) {
        Configuration c = conf.get();
        Path root = new Path(store), file = new Path(dir, shard.file());
        FileSystem fs;
        try {
            // no .crc files on a local disk: the driver checks each shard's length, loaders read safetensors by its header
            fs = LocalDisk.unchecked(file.getFileSystem(c));
        } catch (IOException e) {
            throw new UncheckedIOException(file + ": cannot open the file system (" + e.getMessage() + ")", e);
        }
        Blocks blocks = new Blocks(c, root, layout);
        StoreTensors.Located located = null;  // where block -1's parts are (the only block whose tensors are split)
        try (SafetensorsWriter.Streaming out = SafetensorsWriter.open(fs, file,
                shard.tensors().stream().map(Planned::header).toList(), METADATA)) {
            for (Planned t : shard.tensors()) {
                String name = t.header().name();
                DType dtype = t.header().dtype();
                if (t.source() instanceof Layer l) {
                    Tensor converted = blocks.layer(l).get(name);
                    if (converted == null) throw new IllegalStateException(l.layer() + ": the conversion made no tensor " + name);
                    out.write(converted);
                } else if (t.source() instanceof Stored s && s.block() != TensorRecord.MODEL_BLOCK) {
                    byte[] bytes = convert(blocks.tensor(s), dtype);
                    out.write(name, bytes, 0, bytes.length);
                } else if (t.source() instanceof Stored s) {
                    if (s.parts() > 1 && located == null) located = StoreTensors.locate(c, root, s.block());
                    for (int p = 0; p < s.parts(); p++) {
                        // one part in memory at a time; a tensor stored whole (older stores) is its only part
                        TensorRecord part = s.parts() == 1 ? StoreTensors.read(c, root, s.block(), s.module(), s.kind())
                                : located.part(s.module(), s.kind(), p);
                        byte[] bytes = convert(part, dtype);
                        out.write(name, bytes, 0, bytes.length);
                    }
                }
            }
            out.finish();
        }
        return blocks.errors;
    }

    /**
     * A stored full-precision value (a tensor or a part of one) as bytes of {@code to}: its own bytes when the
     * dtypes agree, else widened to float32 and rounded to {@code to} (ties to even).
     */
    static byte[] convert(TensorRecord t, DType to) {
        int width = TensorRecord.elementBytes(t.dtype());
        if (width == 0) throw new IllegalArgumentException(t.describe() + ": dtype " + t.dtype() + " is not a full-precision dtype");
        if (dtypeOf(t.dtype()) == to) return t.data();
        return SafetensorsWriter.encode(to, TensorRecord.decode(t.data(), 0, t.data().length / width, t.dtype()));
    }

    /** The safetensors dtype of a store dtype ({@code float32}, {@code bfloat16}, {@code float16}), null for others. */
    static DType dtypeOf(String storeDtype) {
        return switch (storeDtype) {
            case TensorRecord.FLOAT32 -> DType.F32;
            case TensorRecord.BFLOAT16 -> DType.BF16;
            case TensorRecord.FLOAT16 -> DType.F16;
            default -> null;
        };
    }

    /** The one block a task holds: read when the shard first needs it, dropped for the next. */
    private static final class Blocks {
        private final Configuration conf;
        private final Path root;
        private int block = Integer.MIN_VALUE;
        private Map<String, Map<String, TensorRecord>> modules;
        private String layer;
        private Map<String, Tensor> layerTensors;
        private final LayerLayout layout;
        final List<AddedError> errors = new java.util.ArrayList<>();

        Blocks(Configuration conf, Path root, LayerLayout layout) {
            this.conf = conf;
            this.root = root;
            this.layout = layout;
        }

        private Map<String, Map<String, TensorRecord>> modules(int b) {
            if (b != block) {
                modules = null;  // the previous block goes before the next is read
                layer = null;
                layerTensors = null;
                Map<String, Map<String, TensorRecord>> byModule = new TreeMap<>();
                for (TensorRecord t : StoreTensors.read(conf, root, b)) {
                    byModule.computeIfAbsent(t.module(), m -> new TreeMap<>()).put(t.kind(), t);
                }
                modules = byModule;
                block = b;
            }
            return modules;
        }

        TensorRecord tensor(Stored s) {
            TensorRecord t = modules(s.block()).getOrDefault(s.module(), Map.of()).get(s.kind());
            if (t == null) throw new IllegalStateException(root + ": block " + s.block() + " has no module " + s.module() + " kind " + s.kind());
            return t;
        }

        /** The tensors of quantized layer {@code l} by name, converted once for all of them. */
        Map<String, Tensor> layer(Layer l) {
            Map<String, Map<String, TensorRecord>> m = modules(l.block());
            if (!l.layer().equals(layer)) {
                if (!m.containsKey(l.module())) throw new IllegalStateException(root + ": block " + l.block() + " has no module " + l.module());
                LayerLayout.Converted converted = layout.convert(l.layer(), l.module(), m);
                layerTensors = new HashMap<>();
                for (Tensor t : converted.tensors()) layerTensors.put(t.name(), t);
                // a layer split over two shards is converted in both: the driver counts it once
                if (converted.weightSq() > 0 && !layerTensors.isEmpty()) errors.add(new AddedError(l.layer(), converted.errorSq(), converted.weightSq()));
                layer = l.layer();
            }
            return layerTensors;
        }
    }
}
