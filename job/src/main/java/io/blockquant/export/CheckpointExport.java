package io.blockquant.export;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.model.DType;
import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.ModelFormatException;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.SafetensorsWriter;
import io.blockquant.model.SafetensorsWriter.Tensor;
import io.blockquant.store.StoreReader;
import io.blockquant.store.TensorRecord;
import io.blockquant.tensor.Nd4jBackend;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.stream.IntStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.SparkSession;

/**
 * {@code export}: a finished model store as a Hugging Face checkpoint folder a serving stack loads:
 * {@code model.safetensors} (the quantized layers in the chosen layout, every other tensor as in the source
 * model, in its dtype), {@code config.json} with a {@code quantization_config}, the tokenizer files.
 * The folder is written under a temporary name beside {@code --out} and renamed at the end, so a reader
 * sees the whole checkpoint or none. The tensors are gathered in the driver's memory before the file is
 * written (the store's size, quantized: fine for the models here; sharding is not done).
 */
public final class CheckpointExport {

    private CheckpointExport() {}

    public enum Format { GPTQ, FP8 }

    public record Result(String out, int tensors, int quantizedLayers, long bytes) {}

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final List<String> MODEL_FILES = List.of("tokenizer.json", "tokenizer_config.json", "generation_config.json");

    public static Result run(SparkSession spark, String storePath, Format format, String outDir) {
        StoreReader store = StoreReader.open(spark, storePath);
        Configuration conf = spark.sparkContext().hadoopConfiguration();
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

        List<Tensor> tensors = new ArrayList<>();
        for (TensorRecord t : store.modelTensors()) tensors.add(Tensor.floats(t.module(), dtype, t.toFloats(), t.shape()));
        ModelLoader names = new ModelLoader(new InMemoryWeights("names", Map.of(), Map.of()), spec, Nd4jBackend.INSTANCE);
        QuantizedLayers layers = new QuantizedLayers(store.root().toString());
        for (int block : store.blocks()) {
            Map<String, Map<String, TensorRecord>> byModule = new TreeMap<>();
            for (TensorRecord t : store.tensors(block)) byModule.computeIfAbsent(t.module(), m -> new TreeMap<>()).put(t.kind(), t);
            String prefix = names.blockPrefix(block);
            for (Map.Entry<String, Map<String, TensorRecord>> m : byModule.entrySet()) {
                Map<String, TensorRecord> kinds = m.getValue();
                TensorRecord qweight = kinds.get(TensorRecord.QWEIGHT);
                if (qweight != null) {
                    layers.add(prefix + m.getKey(), qweight);
                    tensors.addAll(format == Format.GPTQ ? GptqTensors.of(prefix + m.getKey(), kinds) : Fp8Tensors.of(prefix + m.getKey(), kinds));
                } else {
                    for (TensorRecord t : kinds.values()) {
                        tensors.add(Tensor.floats(prefix + m.getKey() + "." + t.kind(), dtype, t.toFloats(), t.shape()));
                    }
                }
            }
        }
        config.set("quantization_config", format == Format.GPTQ ? gptqConfig(layers, recipe) : fp8Config(recipe, store.root()));

        Path out = new Path(outDir);
        try {
            FileSystem fs = out.getFileSystem(conf);
            out = fs.makeQualified(out);
            if (fs.exists(out) && (!fs.getFileStatus(out).isDirectory() || fs.listStatus(out).length > 0) && !isExport(fs, out)) {
                throw new IllegalArgumentException(out + " exists and is neither empty nor a checkpoint written by export; choose another --out");
            }
            Path tmp = new Path(out.getParent(), "." + out.getName() + ".tmp-" + UUID.randomUUID());
            fs.mkdirs(tmp);
            SafetensorsWriter.write(fs, new Path(tmp, "model.safetensors"), tensors, Map.of("format", "pt"));
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
            // an empty folder, or an earlier export (a retried job rewrites its folder): replaced once the new one is whole
            if (fs.exists(out)) fs.delete(out, true);
            if (!fs.rename(tmp, out)) throw new IOException("cannot rename " + tmp + " to " + out);
            long bytes = fs.getContentSummary(out).getLength();
            return new Result(out.toString(), tensors.size(), layers.count, bytes);
        } catch (IOException e) {
            throw new UncheckedIOException(out + ": cannot write the checkpoint (" + e.getMessage() + ")", e);
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

        void add(String name, TensorRecord qweight) {
            if (count++ == 0) {
                bits = qweight.bits();
                groupSize = qweight.groupSize();
                format = qweight.format();
            } else if (bits != qweight.bits() || groupSize != qweight.groupSize() || !format.equals(qweight.format())) {
                throw new IllegalArgumentException(store + ": " + name + " is " + qweight.format() + " " + qweight.bits()
                        + " bits, group " + qweight.groupSize() + ", other layers " + format + " " + bits + " bits, group "
                        + groupSize + "; a GPTQ config states one setting for every layer");
            }
        }
    }

    /** AutoGPTQ's / transformers' GPTQ config: desc_act and damping from the store's recipe. */
    static ObjectNode gptqConfig(QuantizedLayers layers, JsonNode recipe) {
        if (recipe.path("abits").asInt(0) > 0) {
            throw new IllegalArgumentException(layers.store + ": the store quantizes activations too (abits "
                    + recipe.path("abits").asInt() + "); the GPTQ layout holds weight-only models");
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
        q.put("checkpoint_format", "gptq");
        q.put("model_file_base_name", "model");
        return q;
    }

    /** compressed-tensors' quantization arguments of symmetric 8-bit floats with the given strategy. */
    private static ObjectNode fp8Args(String strategy, boolean dynamic) {
        ObjectNode a = JSON.createObjectNode();
        a.put("num_bits", 8);
        a.put("type", "float");
        a.put("symmetric", true);
        a.put("strategy", strategy);
        a.put("dynamic", dynamic);
        a.putNull("group_size");
        return a;
    }

    /** compressed-tensors' config for per-channel FP8 E4M3 weights (and dynamic per-token FP8 E4M3 activations). */
    static ObjectNode fp8Config(JsonNode recipe, Path store) {
        int abits = recipe.path("abits").asInt(0);
        String aformat = recipe.path("aformat").asText("int");
        if (abits != 0 && !(abits == 8 && aformat.equals("e4m3"))) {
            throw new IllegalArgumentException(store + ": the store quantizes activations as " + (aformat.equals("int") ? "INT" + abits : aformat)
                    + "; the float-quantized layout takes weight-only FP8 or dynamic per-token FP8 E4M3 activations");
        }
        ObjectNode weights = fp8Args("channel", false);
        weights.putNull("actorder");
        weights.putNull("block_structure");
        ObjectNode group = JSON.createObjectNode();
        group.putArray("targets").add("Linear");
        group.set("weights", weights);
        if (abits == 8) {
            group.set("input_activations", fp8Args("token", true));
        } else {
            group.putNull("input_activations");
        }
        group.putNull("output_activations");
        group.put("format", "float-quantized");
        ObjectNode q = JSON.createObjectNode();
        q.put("quant_method", "compressed-tensors");
        q.put("format", "float-quantized");
        q.put("quantization_status", "compressed");
        q.putObject("config_groups").set("group_0", group);
        q.putArray("ignore").add("lm_head");
        q.putNull("kv_cache_scheme");
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

    /** A folder this command wrote: model.safetensors beside a config.json with a quantization_config. */
    private static boolean isExport(FileSystem fs, Path dir) throws IOException {
        Path config = new Path(dir, "config.json");
        if (!fs.exists(new Path(dir, "model.safetensors")) || !fs.exists(config)) return false;
        try (InputStream in = fs.open(config)) {
            return JSON.readTree(in).has("quantization_config");
        } catch (com.fasterxml.jackson.core.JacksonException e) {
            return false;
        }
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
