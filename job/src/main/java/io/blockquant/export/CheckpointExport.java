package io.blockquant.export;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.export.ShardPlan.Layer;
import io.blockquant.export.ShardPlan.Planned;
import io.blockquant.export.ShardPlan.Shard;
import io.blockquant.export.ShardPlan.Stored;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.DType;
import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.LocalDisk;
import io.blockquant.model.ModelFormatException;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.SafetensorsWriter;
import io.blockquant.model.SafetensorsWriter.Header;
import io.blockquant.store.StoreReader;
import io.blockquant.store.StoreTensors;
import io.blockquant.store.TensorRecord;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.stream.IntStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

/**
 * {@code export}: a finished model store as a Hugging Face checkpoint folder a serving stack loads: the
 * tensors (the quantized layers in the chosen layout, every other tensor as in the source model, in its
 * dtype) in {@code model.safetensors}, or, past {@code --max-shard-size}, in shards
 * {@code model-00001-of-0000N.safetensors} … with {@code model.safetensors.index.json}, as
 * {@code save_pretrained} writes them; {@code config.json} with a {@code quantization_config}; the tokenizer files.
 *
 * <p>A real model (8B–70B, up to 140 GB) is never held whole: the driver plans every output tensor and the
 * shards from the store's metadata ({@link ShardPlan}), then one Spark task per shard writes its file, block by
 * block, straight from the store ({@link ShardTask}). The folder is written under a temporary name beside
 * {@code --out} and renamed at the end, so a reader sees the whole checkpoint or none.
 */
public final class CheckpointExport {

    private CheckpointExport() {}

    /**
     * {@code gptq}: GPTQ v1, or gptq_v2 when a zero point is 0; {@code compressed-tensors}: the scheme chosen from
     * the store ({@link CompressedTensorsScheme}); {@code fp8}: compressed-tensors, refusing every store but FP8.
     */
    public enum Format { GPTQ, COMPRESSED_TENSORS, FP8 }

    /**
     * What an export wrote. {@code layout}: the layout of its quantized layers ({@code gptq_v2}, {@code
     * pack-quantized}, …); {@code addedError}: the relative error {@code ‖W_store − W_exported‖ / ‖W_store‖} over
     * all layers where the layout re-expresses the store's scales (NVFP4), else 0; {@code worstLayer} and
     * {@code worstError}: the layer where it is largest (null and 0 when exact).
     */
    public record Result(String out, int tensors, int quantizedLayers, int shards, long bytes, String layout,
                         double addedError, String worstLayer, double worstError) {}

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final List<String> MODEL_FILES = List.of("tokenizer.json", "tokenizer_config.json", "generation_config.json");

    /** An export in shards of at most {@link ShardPlan#DEFAULT_MAX_SHARD_BYTES} (Hugging Face's 5GB). */
    public static Result run(SparkSession spark, String storePath, Format format, String outDir) {
        return run(spark, storePath, format, outDir, ShardPlan.DEFAULT_MAX_SHARD_BYTES);
    }

    public static Result run(SparkSession spark, String storePath, Format format, String outDir, long maxShardBytes) {
        long started = System.nanoTime();
        Configuration conf = spark.sparkContext().hadoopConfiguration();
        Path out = new Path(outDir);
        FileSystem fs;
        try {
            // a local folder's files without .crc files beside them (as the shard tasks write theirs)
            fs = LocalDisk.unchecked(out.getFileSystem(conf));
            out = fs.makeQualified(out);
            ExportFolder.checkWritable(fs, out);  // before any work: someone else's folder is refused untouched
        } catch (IOException e) {
            throw new UncheckedIOException(out + ": cannot check the output folder (" + e.getMessage() + ")", e);
        }
        StoreReader store = StoreReader.open(spark, storePath);
        Path modelDir = store.modelDir();
        ModelSpec spec = ModelSpecReader.read(modelDir, conf);
        List<Integer> expected = IntStream.range(0, spec.numLayers()).boxed().toList();
        if (!store.blocks().equals(expected)) {
            throw new ModelFormatException(store.root() + ": blocks " + store.blocks() + ", but its config.json has "
                    + spec.numLayers() + " layers; only a whole model is exported");
        }
        ObjectNode config = (ObjectNode) readJson(new Path(modelDir, "config.json"), conf);
        JsonNode recipe = readJson(new Path(store.root(), "recipe.json"), conf);
        DType dtype = sourceDtype(config, new Path(modelDir, "config.json"));

        QuantizedLayers layers = new QuantizedLayers(store.root().toString());
        StoreTensors.Info first = layers.scan(conf, store);
        LayerLayout layout;
        ObjectNode quantizationConfig;
        if (format == Format.GPTQ) {
            if (!first.format().startsWith("int") || first.dtype().startsWith("fp")) {
                throw new IllegalArgumentException(store.root() + ": the store holds " + first.format() + " weights; the GPTQ layout holds "
                        + "integer levels (use --format compressed-tensors)");
            }
            String misfit = first.format().equals("int-sym") ? null : ZeroPointScan.firstMisfit(spark, store.root(), store.blocks());
            layout = new GptqTensors(misfit != null);
            if (misfit != null) System.err.println("export: " + misfit + " has a zero point of 0, which GPTQ v1 cannot hold: writing gptq_v2");
            quantizationConfig = gptqConfig(layers, recipe, layout.label());
        } else {
            if (format == Format.FP8 && !first.dtype().equals("fp8-e4m3")) {
                throw new IllegalArgumentException(store.root() + ": the store holds " + first.dtype() + " (" + first.format() + ") weights; "
                        + "--format fp8 exports FP8 E4M3 stores only (use --format compressed-tensors, which picks the scheme from the store)");
            }
            CompressedTensorsScheme scheme = CompressedTensorsScheme.of(first, recipe, store.root());
            layout = scheme.layout();
            quantizationConfig = scheme.config();
        }
        List<Planned> tensors = plan(conf, store, spec, layout, dtype);
        List<Shard> shards = ShardPlan.split(tensors, maxShardBytes);
        config.set("quantization_config", quantizationConfig);
        long dataBytes = 0;
        for (Shard s : shards) dataBytes += s.bytes();
        System.err.printf(Locale.ROOT, "export: %s, %d tensors, %.1f MB, in %d shard%s of at most %.1f MB%n", layout.label(), tensors.size(),
                dataBytes / 1e6, shards.size(), shards.size() == 1 ? "" : "s", maxShardBytes / 1e6);

        Path tmp = null;
        try {
            tmp = new Path(out.getParent(), "." + out.getName() + ".tmp-" + UUID.randomUUID());
            fs.mkdirs(tmp);
            List<AddedError> errors = writeShards(spark, new ShardTask(conf, store.root(), tmp, layout, shards), shards);
            checkShards(fs, tmp, shards);
            if (shards.size() > 1) writeText(fs, new Path(tmp, Checkpoint.INDEX), ShardPlan.index(shards));
            writeText(fs, new Path(tmp, "config.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(config));
            if (format == Format.GPTQ) {
                // AutoGPTQ reads quantize_config.json; transformers, GPTQModel and vLLM read config.json's copy
                writeText(fs, new Path(tmp, "quantize_config.json"),
                        JSON.writerWithDefaultPrettyPrinter().writeValueAsString(config.get("quantization_config")));
            }
            for (String f : MODEL_FILES) {
                Path src = new Path(modelDir, f);
                if (!src.getFileSystem(conf).exists(src)) continue;
                try (InputStream in = src.getFileSystem(conf).open(src); OutputStream o = fs.create(new Path(tmp, f), true)) {
                    in.transferTo(o);
                }
            }
            writeText(fs, new Path(tmp, ExportFolder.MARKER), ExportFolder.marker(store.root().toString(), layout.label(),
                    java.time.Instant.now().toString()));
            ExportFolder.install(fs, tmp, out);
            tmp = null;
            long bytes = fs.getContentSummary(out).getLength();
            double errorSq = 0, weightSq = 0, worst = 0;
            String worstLayer = null;
            Map<String, AddedError> perLayer = new TreeMap<>();
            for (AddedError e : errors) perLayer.put(e.layer(), e);  // once per layer, also when two shards hold it
            for (AddedError e : perLayer.values()) {
                errorSq += e.errorSq();
                weightSq += e.weightSq();
                double rel = e.weightSq() > 0 ? Math.sqrt(e.errorSq() / e.weightSq()) : 0;
                if (rel > worst || worstLayer == null && e.weightSq() > 0) {
                    worst = rel;
                    worstLayer = e.layer();
                }
            }
            double added = weightSq > 0 ? Math.sqrt(errorSq / weightSq) : 0;
            if (weightSq > 0) {
                System.err.printf(Locale.ROOT, "export: %s re-expresses the store's scales (E4M3 x a power-of-two global scale per block): "
                        + "relative weight error %.3e over all layers, largest %.3e in %s%n", layout.label(), added, worst, worstLayer);
            }
            double seconds = (System.nanoTime() - started) / 1e9;
            System.err.printf(Locale.ROOT, "export: %d shard%s, %d tensors, %.1f MB written to %s in %.1f s (%.0f MB/s)%n", shards.size(),
                    shards.size() == 1 ? "" : "s", tensors.size(), bytes / 1e6, out, seconds, bytes / 1e6 / seconds);
            return new Result(out.toString(), tensors.size(), layers.count, shards.size(), bytes, layout.label(), added, worstLayer, worst);
        } catch (IOException e) {
            throw new UncheckedIOException(out + ": cannot write the checkpoint (" + e.getMessage() + ")", e);
        } finally {
            if (tmp != null) deleteQuietly(conf, tmp);
        }
    }

    /**
     * Every tensor of the checkpoint, from the store's metadata (no weights read): block -1 (embeddings, final
     * norm, head) in the source's dtype, then each block's layers in the chosen layout and its norms in the
     * source's dtype, in module order. The layout's refusals that metadata shows come here, before any task.
     */
    private static List<Planned> plan(Configuration conf, StoreReader store, ModelSpec spec, LayerLayout layout, DType dtype) {
        Path root = store.root();
        List<Planned> tensors = new ArrayList<>();
        Map<String, List<StoreTensors.Info>> parts = new TreeMap<>();
        for (StoreTensors.Info i : StoreTensors.list(conf, root, TensorRecord.MODEL_BLOCK)) {
            parts.computeIfAbsent(i.module() + "\u0000" + i.kind(), k -> new ArrayList<>()).add(i);
        }
        for (List<StoreTensors.Info> p : parts.values()) {
            tensors.add(new Planned(new Header(p.get(0).module(), dtype, p.get(0).shape()), stored(root, TensorRecord.MODEL_BLOCK, p)));
        }
        ModelLoader names = ModelLoader.forNames(new InMemoryWeights("names", Map.of(), Map.of()), spec);
        for (int block : store.blocks()) {
            Map<String, Map<String, StoreTensors.Info>> byModule = new TreeMap<>();
            Map<String, List<StoreTensors.Info>> blockParts = new TreeMap<>();
            for (StoreTensors.Info i : StoreTensors.list(conf, root, block)) {
                byModule.computeIfAbsent(i.module(), m -> new TreeMap<>()).putIfAbsent(i.kind(), i);
                blockParts.computeIfAbsent(i.module() + "\u0000" + i.kind(), k -> new ArrayList<>()).add(i);
            }
            String prefix = names.blockPrefix(block);
            for (Map.Entry<String, Map<String, StoreTensors.Info>> m : byModule.entrySet()) {
                Map<String, StoreTensors.Info> kinds = m.getValue();
                String layer = prefix + m.getKey();
                StoreTensors.Info qweight = kinds.get(TensorRecord.QWEIGHT);
                if (qweight != null) {
                    List<Header> headers = layout.headers(layer, kinds);
                    for (Header h : headers) tensors.add(new Planned(h, new Layer(block, m.getKey(), layer)));
                } else {
                    for (StoreTensors.Info i : kinds.values()) {
                        tensors.add(new Planned(new Header(layer + "." + i.kind(), dtype, i.shape()),
                                stored(root, block, blockParts.get(i.module() + "\u0000" + i.kind()))));
                    }
                }
            }
        }
        return tensors;
    }

    /**
     * A full-precision stored tensor from the metadata of its parts, checked: parts 0..k-1, each of one float
     * dtype, their bytes together the whole shape's (so the parts the shard task copies are the whole tensor).
     */
    private static Stored stored(Path root, int block, List<StoreTensors.Info> parts) {
        StoreTensors.Info first = parts.get(0);
        String what = root + ": block " + block + " module " + first.module() + " kind " + first.kind();
        int width = TensorRecord.elementBytes(first.dtype());
        if (width == 0) {
            throw new ModelFormatException(what + " is " + first.dtype() + " without a qweight beside it; "
                    + "expected a full-precision float32, bfloat16 or float16 tensor");
        }
        long bytes = 0;
        for (int p = 0; p < parts.size(); p++) {
            StoreTensors.Info i = parts.get(p);
            if (i.part() != p || !i.dtype().equals(first.dtype()) || !java.util.Arrays.equals(i.shape(), first.shape())) {
                throw new ModelFormatException(what + ": its stored parts " + parts.stream().map(StoreTensors.Info::part).toList()
                        + " are not parts 0.." + (parts.size() - 1) + " of one " + first.dtype() + " tensor");
            }
            bytes += i.bytes();
        }
        long expected = Math.multiplyExact(GptqTensors.elements(first.shape()), (long) width);
        if (bytes != expected) {
            throw new ModelFormatException(what + ": its parts hold " + bytes + " bytes, its shape "
                    + java.util.Arrays.toString(first.shape()) + " in " + first.dtype() + " needs " + expected);
        }
        return new Stored(block, first.module(), first.kind(), first.dtype(), parts.size());
    }

    /** One task per shard on the executors, with a line on stderr as each finishes; the layers' added errors come back. */
    private static List<AddedError> writeShards(SparkSession spark, ShardTask task, List<Shard> shards) {
        JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        String group = "blockquant-export-" + UUID.randomUUID();
        ExportProgress progress = new ExportProgress(group, shards, System.err);
        spark.sparkContext().addSparkListener(progress);
        sc.setJobGroup(group, "export: " + shards.size() + " shards", false);
        try {
            List<AddedError> errors = new ArrayList<>();
            for (List<AddedError> e : sc.parallelize(IntStream.range(0, shards.size()).boxed().toList(), shards.size()).map(task).collect()) {
                errors.addAll(e);
            }
            progress.awaitLines();
            return errors;
        } finally {
            sc.clearJobGroup();
            spark.sparkContext().removeSparkListener(progress);
        }
    }

    /**
     * Every shard is in place with the planned length; the temporary files of task attempts that died before
     * they could remove them ({@code .<shard>.tmp-<id>}) go.
     */
    private static void checkShards(FileSystem fs, Path dir, List<Shard> shards) throws IOException {
        for (Shard s : shards) {
            Path file = new Path(dir, s.file());
            long expected = SafetensorsWriter.fileBytes(s.tensors().stream().map(Planned::header).toList(), ShardTask.METADATA);
            if (!fs.exists(file) || fs.getFileStatus(file).getLen() != expected) {
                throw new IOException(file + " is " + (fs.exists(file) ? fs.getFileStatus(file).getLen() + " bytes" : "missing")
                        + " after its task, expected " + expected + " bytes");
            }
        }
        for (org.apache.hadoop.fs.FileStatus f : fs.listStatus(dir)) {
            String name = f.getPath().getName();
            if (name.startsWith(".") && name.contains(".safetensors.tmp-")) fs.delete(f.getPath(), false);
        }
    }

    private static void deleteQuietly(Configuration conf, Path dir) {
        try {
            dir.getFileSystem(conf).delete(dir, true);
        } catch (IOException ignored) {
            // a hidden leftover beside --out; the error being thrown says what went wrong
        }
    }

    /** What the quantized layers share, which the GPTQ config states once for the whole model. */
    private static final class QuantizedLayers {
        final String store;
        int count, bits = -1, groupSize = -1;
        String format;

        QuantizedLayers(String store) {
            this.store = store;
        }

        /** Every quantized layer's metadata checked to agree (one setting for the whole model); the first one's. */
        StoreTensors.Info scan(Configuration conf, StoreReader reader) {
            StoreTensors.Info first = null;
            for (int block : reader.blocks()) {
                for (StoreTensors.Info i : StoreTensors.list(conf, reader.root(), block)) {
                    if (!i.kind().equals(TensorRecord.QWEIGHT) || i.part() != 0) continue;
                    add("block " + block + " " + i.module(), i.bits(), i.groupSize(), i.format());
                    if (first == null) first = i;
                }
            }
            if (first == null) throw new IllegalArgumentException(store + ": no quantized layer; nothing to export in a quantized layout");
            return first;
        }

        void add(String name, int layerBits, int layerGroupSize, String layerFormat) {
            if (count++ == 0) {
                bits = layerBits;
                groupSize = layerGroupSize;
                format = layerFormat;
            } else if (bits != layerBits || groupSize != layerGroupSize || !format.equals(layerFormat)) {
                throw new IllegalArgumentException(store + ": " + name + " is " + layerFormat + " " + layerBits
                        + " bits, group " + layerGroupSize + ", other layers " + format + " " + bits + " bits, group "
                        + groupSize + "; a quantization_config states one setting for every layer");
            }
        }
    }

    /** AutoGPTQ's / transformers' GPTQ config: desc_act and damping from the store's recipe. */
    static ObjectNode gptqConfig(QuantizedLayers layers, JsonNode recipe, String checkpointFormat) {
        if (recipe.path("abits").asInt(0) > 0) {
            throw new IllegalArgumentException(layers.store + ": the store quantizes activations too (abits "
                    + recipe.path("abits").asInt() + "); the GPTQ layout holds weight-only models");
        }
        if (recipe.path("kv_bits").asInt(0) > 0) {
            throw new IllegalArgumentException(layers.store + ": the store quantizes the KV cache (kv_bits " + recipe.path("kv_bits").asInt()
                    + "); the GPTQ layout has no place for it: use --format compressed-tensors (kv_cache_scheme)");
        }
        ObjectNode q = JSON.createObjectNode();
        q.put("quant_method", "gptq");
        q.put("bits", layers.bits);
        q.put("group_size", layers.groupSize > 0 ? layers.groupSize : -1);
        q.put("desc_act", recipe.path("act_order").asBoolean(false));
        q.put("static_groups", recipe.path("static_groups").asBoolean(false));
        q.put("sym", "int-sym".equals(layers.format));
        q.put("true_sequential", true);
        if (recipe.hasNonNull("damp")) q.put("damp_percent", recipe.get("damp").asDouble());
        q.put("checkpoint_format", checkpointFormat);
        q.put("model_file_base_name", "model");
        return q;
    }

    /** The dtype the source checkpoint was saved in (config.json {@code torch_dtype}, or {@code dtype} in newer Transformers). */
    static DType sourceDtype(JsonNode config, Path file) {
        String name = config.hasNonNull("torch_dtype") ? config.get("torch_dtype").asText() : config.path("dtype").asText("float32");
        return switch (name) {
            case "float16" -> DType.F16;
            case "bfloat16" -> DType.BF16;
            case "float32" -> DType.F32;
            default -> throw new ModelFormatException(file + ": dtype '" + name + "' (expected float16, bfloat16 or float32)");
        };
    }

    private static JsonNode readJson(Path p, Configuration conf) {
        try (InputStream in = p.getFileSystem(conf).open(p)) {
            JsonNode n = JSON.readTree(in);
            if (n == null || !n.isObject()) throw new ModelFormatException(p + ": expected a JSON object");
            return n;
        } catch (java.io.FileNotFoundException e) {
            throw new ModelFormatException(p + ": file not found");
        } catch (IOException e) {
            throw new ModelFormatException(p + ": cannot read (" + e.getMessage() + ")", e);
        }
    }

    private static void writeText(FileSystem fs, Path p, String text) throws IOException {
        try (OutputStream o = fs.create(p, true)) {
            o.write(text.getBytes(StandardCharsets.UTF_8));
        }
    }
}
