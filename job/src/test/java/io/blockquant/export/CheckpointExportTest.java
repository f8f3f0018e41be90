package io.blockquant.export;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.Fixtures;
import io.blockquant.algo.CalibratedBlock;
import io.blockquant.algo.FpQuantizedLinear;
import io.blockquant.algo.GptqConfig;
import io.blockquant.algo.GptqQuantizer;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.algo.RtnQuantizer;
import io.blockquant.algo.StoredWeight;
import io.blockquant.cli.Main;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.FloatRounding;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.SafetensorsWriter;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.quant.FpFormat;
import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.FpQuantizer;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.ScaleConstraint;
import io.blockquant.schedule.BlockWork;
import io.blockquant.spark.SparkSessions;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.StoreReader;
import io.blockquant.store.StoreWriter;
import io.blockquant.store.TensorRecord;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Function;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Exported checkpoints read back by a reader written here from the published layouts alone (safetensors
 * header and little-endian data; GPTQ v1 bit streams along the input dimension for qweight and the output
 * dimension for qzeros, zero = stored + 1; float16 scales; float8_e4m3fn codes), never through the
 * exporter's code. Equality with the store: the store keeps float32 scales and the GPTQ layout float16 ones,
 * so an exported GPTQ weight must equal, bit for bit, the store's dequantization with each scale rounded to
 * float16 first (and the level − zero differences must be the store's exactly); FP8 weights must equal the
 * store's dequantization bit for bit.
 */
class CheckpointExportTest {

    static SparkSession spark;
    static final TensorBackend BE = Nd4jBackend.INSTANCE;
    static final ObjectMapper JSON = new ObjectMapper();
    static final org.apache.hadoop.fs.Path MODEL = new org.apache.hadoop.fs.Path(Fixtures.model("tiny-llama").toString());

    @BeforeAll
    static void startSpark() {
        spark = SparkSessions.getOrCreate("export-test", "local[2]");
    }

    @AfterAll
    static void stopSpark() {
        spark.stop();
    }

    // ---- the independent reader -------------------------------------------------------------------

    record Read(String dtype, long[] shape, ByteBuffer data) {
        int[] ints() {
            int[] v = new int[data.remaining() / 4];
            data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(v);
            return v;
        }

        float[] floats() {
            ByteBuffer b = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
            return switch (dtype) {
                case "F32" -> {
                    float[] v = new float[b.remaining() / 4];
                    b.asFloatBuffer().get(v);
                    yield v;
                }
                case "F16", "BF16" -> {
                    float[] v = new float[b.remaining() / 2];
                    for (int i = 0; i < v.length; i++) {
                        int h = b.getShort(2 * i) & 0xffff;
                        v[i] = dtype.equals("BF16") ? Float.intBitsToFloat(h << 16) : half(h);
                    }
                    yield v;
                }
                default -> throw new AssertionError(dtype);
            };
        }
    }

    /** IEEE binary16 from its definition: (−1)^s · 2^(e−15) · 1.m, subnormals 2^−14 · 0.m. */
    static float half(int h) {
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        assertNotEquals(31, e, "no inf/NaN expected in scales");
        double v = e == 0 ? Math.scalb(m / 1024.0, -14) : Math.scalb(1 + m / 1024.0, e - 15);
        return (float) (s == 1 ? -v : v);
    }

    /** OCP float8_e4m3fn from its definition: bias 7, S.1111.111 NaN, subnormals 2^−6 · 0.m. */
    static float e4m3(int code) {
        int s = (code >> 7) & 1, e = (code >> 3) & 15, m = code & 7;
        if (e == 15 && m == 7) return Float.NaN;
        double v = e == 0 ? Math.scalb(m / 8.0, -6) : Math.scalb(1 + m / 8.0, e - 7);
        return (float) (s == 1 ? -v : v);
    }

    static Map<String, Read> readSafetensors(Path file) throws IOException {
        ByteBuffer all = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        long n = all.getLong(0);
        assertEquals(0, (8 + n) % 8, "tensor data starts 8-byte aligned");
        JsonNode header = JSON.readTree(new String(all.array(), 8, (int) n, StandardCharsets.UTF_8));
        assertEquals("pt", header.path("__metadata__").path("format").asText(), "transformers needs metadata format pt");
        Map<String, Read> out = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (e.getKey().equals("__metadata__")) continue;
            JsonNode t = e.getValue();
            long[] shape = new long[t.get("shape").size()];
            for (int i = 0; i < shape.length; i++) shape[i] = t.get("shape").get(i).asLong();
            int begin = (int) (8 + n + t.get("data_offsets").get(0).asLong()), end = (int) (8 + n + t.get("data_offsets").get(1).asLong());
            out.put(e.getKey(), new Read(t.get("dtype").asText(), shape, ByteBuffer.wrap(all.array(), begin, end - begin).slice()));
        }
        return out;
    }

    /**
     * A checkpoint folder's tensors as a loader finds them: {@code model.safetensors}, or the shards that
     * {@code model.safetensors.index.json} names. For an index: every shard file in the folder is named by it,
     * every tensor of every shard is mapped to that shard and nothing else is mapped, and total_size is the
     * bytes of tensor data of all shards.
     */
    static Map<String, Read> readCheckpoint(Path dir) throws IOException {
        Path index = dir.resolve("model.safetensors.index.json");
        if (!Files.exists(index)) return readSafetensors(dir.resolve("model.safetensors"));
        assertFalse(Files.exists(dir.resolve("model.safetensors")), "a sharded checkpoint has no model.safetensors beside its index");
        JsonNode root = JSON.readTree(index.toFile());
        JsonNode weightMap = root.get("weight_map");
        Map<String, String> mapped = new HashMap<>();
        weightMap.fields().forEachRemaining(e -> mapped.put(e.getKey(), e.getValue().asText()));
        java.util.Set<String> files = new java.util.TreeSet<>(mapped.values());
        java.util.Set<String> onDisk = new java.util.TreeSet<>();
        try (var list = Files.list(dir)) {
            list.map(f -> f.getFileName().toString()).filter(f -> f.endsWith(".safetensors")).forEach(onDisk::add);
        }
        assertEquals(onDisk, files, "the index names every shard file of the folder");
        Map<String, Read> out = new LinkedHashMap<>();
        long total = 0;
        for (String f : files) {
            assertTrue(f.matches("model-\\d{5}-of-" + String.format("%05d", files.size()) + "\\.safetensors"), f);
            for (Map.Entry<String, Read> e : readSafetensors(dir.resolve(f)).entrySet()) {
                assertEquals(f, mapped.get(e.getKey()), e.getKey() + " is mapped to the shard that holds it");
                assertTrue(out.put(e.getKey(), e.getValue()) == null, e.getKey() + " is in one shard only");
                total += e.getValue().data().remaining();
            }
        }
        assertEquals(mapped.keySet(), out.keySet(), "the index maps exactly the tensors of the shards");
        assertEquals(total, root.get("metadata").get("total_size").asLong(), "total_size: bytes of tensor data");
        return out;
    }

    /**
     * Value {@code k} of a stream of {@code bits}-bit values whose 32-bit word j is {@code word.apply(j)}: bits
     * {@code [k·bits, (k+1)·bits)}, read through a 64-bit window over words j and j+1.
     */
    static int streamValue(Function<Integer, Integer> word, int words, int k, int bits) {
        int j = k * bits / 32, off = k * bits % 32;
        long window = (word.apply(j) & 0xffffffffL) | (j + 1 < words ? (word.apply(j + 1) & 0xffffffffL) << 32 : 0L);
        return (int) ((window >>> off) & ((1L << bits) - 1));
    }

    /**
     * A GPTQ layer read back: {@code W[o, i] = scales[g, o] · (q[o, i] − (qzeros[g, o] + 1))}, g = g_idx[i]; the
     * integer {@code q − zero} differences go into {@code diffs}.
     */
    static float[] dequantizeGptq(Map<String, Read> t, String layer, int bits, int[] diffs) {
        return dequantizeGptq(t, layer, bits, diffs, false);
    }

    /** As above; gptq_v2 ({@code v2}) stores the zero point itself: {@code W = scales · (q − qzeros)}. */
    static float[] dequantizeGptq(Map<String, Read> t, String layer, int bits, int[] diffs, boolean v2) {
        Read qw = t.get(layer + ".qweight"), qz = t.get(layer + ".qzeros"), sc = t.get(layer + ".scales"), gi = t.get(layer + ".g_idx");
        assertEquals("I32", qw.dtype(), layer);
        assertEquals("I32", qz.dtype(), layer);
        assertEquals("F16", sc.dtype(), layer);
        assertEquals("I32", gi.dtype(), layer);
        int wordsIn = (int) qw.shape()[0], out = (int) qw.shape()[1], in = wordsIn * 32 / bits;
        int groups = (int) sc.shape()[0];
        assertArrayEquals(new long[] {groups, out}, sc.shape(), layer);
        assertArrayEquals(new long[] {groups, (long) out * bits / 32}, qz.shape(), layer);
        assertArrayEquals(new long[] {in}, gi.shape(), layer);
        int[] qweight = qw.ints(), qzeros = qz.ints(), gIdx = gi.ints();
        float[] scales = sc.floats();
        int zWords = out * bits / 32;
        float[] w = new float[out * in];
        for (int o = 0; o < out; o++) {
            final int col = o;
            for (int i = 0; i < in; i++) {
                int q = streamValue(j -> qweight[j * out + col], wordsIn, i, bits);
                int g = gIdx[i];
                int z = streamValue(j -> qzeros[g * zWords + j], zWords, o, bits) + (v2 ? 0 : 1);
                diffs[o * in + i] = q - z;
                w[o * in + i] = scales[g * out + o] * (q - z);
            }
        }
        return w;
    }

    // ---- stores built from tiny-llama's weights, no calibration pass ------------------------------------

    /** One store: every linear of every block quantized by {@code quantize}, norms and the rest as in the model. */
    static StoreReader store(Path dir, String recipeJson, Function<Linear, StoredWeight> quantize) {
        return store(dir, recipeJson, quantize, 0);
    }

    /**
     * As above; with {@code blocks} > 0 the store holds tiny-llama's first {@code blocks} blocks and a config.json
     * that says so (a whole, shorter model: cheaper stores for tests that only need the layout).
     */
    static StoreReader store(Path dir, String recipeJson, Function<Linear, StoredWeight> quantize, int blocks) {
        Configuration conf = new Configuration();
        StoreWriter w = StoreWriter.create(spark, dir.toString(), "test-fingerprint", false);
        if (blocks > 0) {
            try {
                com.fasterxml.jackson.databind.node.ObjectNode config =
                        (com.fasterxml.jackson.databind.node.ObjectNode) JSON.readTree(new java.io.File(MODEL.toUri().getPath(), "config.json"));
                config.put("num_hidden_layers", blocks);
                Path shorter = Files.createTempFile("config-" + blocks + "-blocks", ".json");
                Files.writeString(shorter, JSON.writeValueAsString(config));
                w.copyModelFile(new org.apache.hadoop.fs.Path(shorter.toUri()), "config.json");
                Files.delete(shorter);
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        } else {
            w.copyModelFile(new org.apache.hadoop.fs.Path(MODEL, "config.json"), "config.json");
        }
        w.copyModelFile(new org.apache.hadoop.fs.Path(MODEL, "tokenizer.json"), "tokenizer.json");
        w.writeJson("recipe.json", recipeJson);
        ModelSpec spec = ModelSpecReader.read(MODEL, conf);
        try (Checkpoint ckpt = Checkpoint.open(MODEL, conf)) {
            ModelLoader loader = new ModelLoader(ckpt, spec, BE);
            List<TensorRecord> model = new ArrayList<>();
            for (String name : ckpt.tensorNames()) {
                if (loader.isBlockTensor(name)) continue;
                long[] shape = ckpt.entry(name).shape();
                model.add(TensorRecord.floats(-1, name, "weight", ckpt.readFloats(name, shape), shape));
            }
            w.commitModelTensors(model);
            int n = blocks > 0 ? blocks : spec.numLayers();
            for (int b = 0; b < n; b++) w.commitBlock(b, blockRecords(loader.block(b), b, quantize), List.of());
        }
        w.commit(Map.of());
        return StoreReader.open(spark, dir.toString());
    }

    static List<TensorRecord> blockRecords(DecoderBlock fp, int block, Function<Linear, StoredWeight> quantize) {
        Map<String, StoredWeight> layers = new LinkedHashMap<>();
        Map<String, float[]> done = new HashMap<>();
        for (Linear l : fp.linears()) {
            StoredWeight q = quantize.apply(l);
            layers.put(l.name(), q);
            done.put(l.name(), q.dequantize());
        }
        return BlockRecords.of(block, new CalibratedBlock(BlockWork.withWeights(fp, done), layers));
    }

    /**
     * GPTQ with act-order on a random Hessian per input width (a stand-in for calibration: g_idx is then not
     * monotone) for the layers of block 0, RTN for the others (GPTQ's column loops on every layer would only
     * make the test slower; the layout does not depend on how levels were found).
     */
    static Function<Linear, StoredWeight> gptqActOrderInBlock0(IntQuantSpec spec) {
        GptqConfig cfg = new GptqConfig(spec, 0.01, 128, true, false);
        Map<Integer, GptqQuantizer.PreparedHessian> hessians = new HashMap<>();
        int[] seen = {0};
        return l -> {
            if (seen[0]++ >= 7) return RtnQuantizer.quantize(l.weight(), spec);
            int in = (int) l.weight().size(1);
            GptqQuantizer.PreparedHessian h = hessians.computeIfAbsent(in, n -> {
                Random rnd = new Random(n);
                float[] x = new float[128 * n];
                for (int i = 0; i < x.length; i++) x[i] = (float) (rnd.nextGaussian() * (1 + (i % n) % 7));
                HessianAccumulator acc = new HessianAccumulator(n);
                acc.add(BE.fromFloats(x, 128, n));
                return GptqQuantizer.PreparedHessian.of(BE, acc.hessian(), cfg);
            });
            return GptqQuantizer.quantize(l.weight(), h, cfg);
        };
    }

    static Map<String, Map<String, TensorRecord>> byModule(List<TensorRecord> records) {
        Map<String, Map<String, TensorRecord>> out = new LinkedHashMap<>();
        for (TensorRecord t : records) out.computeIfAbsent(t.module(), m -> new HashMap<>()).put(t.kind(), t);
        return out;
    }

    /** The store's dequantization of {@code records} with every scale rounded to float16 first. */
    static Map<String, float[]> storeWeightsWithHalfScales(List<TensorRecord> records) {
        List<TensorRecord> rounded = new ArrayList<>();
        for (TensorRecord t : records) {
            if (!t.kind().equals(BlockRecords.SCALES)) {
                rounded.add(t);
                continue;
            }
            float[] s = t.toFloats();
            for (int i = 0; i < s.length; i++) s[i] = FloatRounding.toFloat16(s[i]);
            rounded.add(TensorRecord.floats(t.block(), t.module(), t.kind(), s, t.shape()));
        }
        Map<String, float[]> values = new HashMap<>();
        BlockRecords.dequantize(rounded, "", values, new HashMap<>());
        return values;
    }

    /** The store's level − zero differences of one layer, by (row, column). */
    static int[] storeDiffs(Map<String, TensorRecord> kinds) {
        TensorRecord q = kinds.get(TensorRecord.QWEIGHT);
        int rows = (int) q.shape()[0], cols = (int) q.shape()[1];
        int[] levels = q.levels(), gIdx = kinds.get(BlockRecords.G_IDX).toInts();
        float[] zeros = kinds.get(BlockRecords.ZEROS).toFloats();
        int groups = zeros.length / rows;
        int[] d = new int[rows * cols];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) d[r * cols + c] = levels[r * cols + c] - (int) zeros[r * groups + gIdx[c]];
        return d;
    }

    static void assertLayersMatch(Map<String, Read> exported, String prefix, List<TensorRecord> block, int bits) {
        assertLayersMatch(exported, prefix, block, bits, false);
    }

    static void assertLayersMatch(Map<String, Read> exported, String prefix, List<TensorRecord> block, int bits, boolean v2) {
        Map<String, float[]> expected = storeWeightsWithHalfScales(block);
        Map<String, Map<String, TensorRecord>> modules = byModule(block);
        int layers = 0;
        for (Map.Entry<String, Map<String, TensorRecord>> m : modules.entrySet()) {
            if (!m.getValue().containsKey(TensorRecord.QWEIGHT)) continue;
            layers++;
            String layer = prefix + m.getKey();
            int[] diffs = new int[expected.get(m.getKey() + ".weight").length];
            float[] w = dequantizeGptq(exported, layer, bits, diffs, v2);
            assertArrayEquals(storeDiffs(m.getValue()), diffs, layer + ": level − zero");
            assertArrayEquals(expected.get(m.getKey() + ".weight"), w, layer + ": dequantized weight");
            assertFalse(exported.containsKey(layer + ".weight"), layer + ": no float weight beside qweight");
        }
        assertEquals(7, layers);
    }

    // ---- the tests -------------------------------------------------------------------------------------

    @Test
    void gptqW4g64ActOrderCheckpointReadsBackAsTheStore(@TempDir Path tmp) throws IOException {
        IntQuantSpec spec = new IntQuantSpec(4, 64, false);
        StoreReader store = store(tmp.resolve("store"), "{\"method\": \"gptq\", \"abits\": 0, \"act_order\": true, \"damp\": 0.01}",
                gptqActOrderInBlock0(spec));
        Path out = tmp.resolve("ckpt");
        assertEquals(0, Main.execute("export", "--store", tmp.resolve("store").toString(), "--format", "gptq",
                "--out", out.toString(), "--master", "local[2]"));

        JsonNode q = JSON.readTree(out.resolve("config.json").toFile()).get("quantization_config");
        assertEquals("gptq", q.get("quant_method").asText());
        assertEquals(4, q.get("bits").asInt());
        assertEquals(64, q.get("group_size").asInt());
        assertTrue(q.get("desc_act").asBoolean());
        assertFalse(q.get("sym").asBoolean());
        assertEquals("gptq", q.get("checkpoint_format").asText());
        assertEquals(q, JSON.readTree(out.resolve("quantize_config.json").toFile()));
        assertTrue(Files.exists(out.resolve("tokenizer.json")));

        assertFalse(Files.exists(out.resolve("model.safetensors.index.json")), "one shard: no index, as save_pretrained writes it");
        Map<String, Read> t = readCheckpoint(out);
        int[] gIdx = t.get("model.layers.0.mlp.down_proj.g_idx").ints();
        boolean permuted = false;
        for (int i = 1; i < gIdx.length; i++) permuted |= gIdx[i] < gIdx[i - 1];
        assertTrue(permuted, "act-order: g_idx is not monotone");
        for (int b = 0; b < 8; b++) {
            List<TensorRecord> block = store.tensors(b);
            assertLayersMatch(t, "model.layers." + b + ".", block, 4);
            // norms as in the source (bf16, so the store's float32 values exactly)
            for (TensorRecord r : block) {
                if (r.kind().equals("weight")) {
                    assertArrayEquals(r.toFloats(), t.get("model.layers." + b + "." + r.module() + ".weight").floats(), r.describe());
                    assertEquals("BF16", t.get("model.layers." + b + "." + r.module() + ".weight").dtype());
                }
            }
        }
        for (TensorRecord r : store.modelTensors()) assertArrayEquals(r.toFloats(), t.get(r.module()).floats(), r.module());
        assertEquals(8 * 7 * 4 + 8 * 2 + store.modelTensors().size(), t.size(), "qweight, qzeros, scales, g_idx per layer; two norms per block; the rest");
    }

    /** Layer by layer (no store needed): 3 bits per channel (levels straddle words) and 2 bits in groups of 64. */
    @Test
    void threeBitPerChannelAndTwoBitGroupsPackAsThePublishedLayout(@TempDir Path tmp) throws IOException {
        Configuration conf = new Configuration();
        DecoderBlock fp;
        try (Checkpoint ckpt = Checkpoint.open(MODEL, conf)) {
            fp = new ModelLoader(ckpt, ModelSpecReader.read(MODEL, conf), BE).block(3);
        }
        FileSystem fs = FileSystem.getLocal(conf);
        for (IntQuantSpec spec : List.of(new IntQuantSpec(3, 0, true), new IntQuantSpec(2, 64, false), new IntQuantSpec(8, 0, false))) {
            List<TensorRecord> block = blockRecords(fp, 3, l -> RtnQuantizer.quantize(l.weight(), spec));
            List<SafetensorsWriter.Tensor> tensors = new ArrayList<>();
            byModule(block).forEach((module, kinds) -> {
                if (kinds.containsKey(TensorRecord.QWEIGHT)) tensors.addAll(GptqTensors.of("layers.3." + module, kinds, false));
            });
            Path file = tmp.resolve("w" + spec.bits() + ".safetensors");
            SafetensorsWriter.write(fs, new org.apache.hadoop.fs.Path(file.toString()), tensors, Map.of("format", "pt"));
            assertLayersMatch(readSafetensors(file), "layers.3.", block, spec.bits());
        }
    }

    @Test
    void fp8CheckpointReadsBackAsTheStore(@TempDir Path tmp) throws IOException {
        FpQuantSpec spec = new FpQuantSpec(FpFormat.E4M3, 0, ScaleConstraint.NONE);
        StoreReader store = store(tmp.resolve("store"), "{\"method\": \"rtn\", \"abits\": 8, \"aformat\": \"e4m3\"}", l -> {
            int rows = (int) l.weight().size(0), cols = (int) l.weight().size(1);
            byte[] codes = new byte[rows * cols];
            float[] scales = FpQuantizer.encodeWeight(l.weight().toFloats(), rows, cols, spec, codes);
            return new FpQuantizedLinear(rows, cols, spec, 1, codes, scales, new int[cols], 0);
        });
        Path out = tmp.resolve("ckpt");
        CheckpointExport.run(spark, tmp.resolve("store").toString(), CheckpointExport.Format.FP8, out.toString());

        JsonNode q = JSON.readTree(out.resolve("config.json").toFile()).get("quantization_config");
        assertEquals("compressed-tensors", q.get("quant_method").asText());
        assertEquals("float-quantized", q.get("format").asText());
        JsonNode g = q.get("config_groups").get("group_0");
        assertEquals("channel", g.get("weights").get("strategy").asText());
        assertEquals("float", g.get("weights").get("type").asText());
        assertEquals("token", g.get("input_activations").get("strategy").asText());
        assertTrue(g.get("input_activations").get("dynamic").asBoolean());

        Map<String, Read> t = readCheckpoint(out);
        for (int b = 0; b < 8; b++) {
            Map<String, float[]> expected = new HashMap<>();
            BlockRecords.dequantize(store.tensors(b), "", expected, new HashMap<>());
            for (String m : List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")) {
                String layer = "model.layers." + b + "." + m;
                Read w = t.get(layer + ".weight"), s = t.get(layer + ".weight_scale");
                assertEquals("F8_E4M3", w.dtype(), layer);
                assertEquals("F32", s.dtype(), layer);
                int out0 = (int) w.shape()[0], in = (int) w.shape()[1];
                assertArrayEquals(new long[] {out0, 1}, s.shape(), layer);
                assertFalse(t.containsKey(layer + ".input_scale"), layer + ": dynamic activations have no input_scale");
                float[] scales = s.floats(), dq = new float[out0 * in];
                for (int o = 0; o < out0; o++) {
                    for (int i = 0; i < in; i++) dq[o * in + i] = e4m3(w.data().get(o * in + i) & 0xff) * scales[o];
                }
                assertArrayEquals(expected.get(m + ".weight"), dq, layer);
            }
        }

        // a retried export replaces its own folder; a folder holding anything else is refused
        CheckpointExport.run(spark, tmp.resolve("store").toString(), CheckpointExport.Format.FP8, out.toString());
        assertEquals(t.keySet(), readCheckpoint(out).keySet());
        Path other = Files.createDirectories(tmp.resolve("other"));
        Files.writeString(other.resolve("notes.txt"), "not a checkpoint");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CheckpointExport.run(spark, tmp.resolve("store").toString(), CheckpointExport.Format.FP8, other.toString()));
        assertTrue(e.getMessage().contains("other") && e.getMessage().contains("--out"), e.getMessage());
        assertTrue(Files.exists(other.resolve("notes.txt")));
    }

    /**
     * A store as quantize writes block -1 since store format 2: the checkpoint's bf16 bytes, the embedding split
     * along its rows into parts (three here, of 1500, 1500 and 1096 rows: a real one is split into 64 MiB parts,
     * which a test model does not reach); the head as a store written before keeps it (float32, whole), so one
     * export copies some tensors and converts others. Blocks: symmetric RTN W4 g64.
     */
    static StoreReader storeWithSplitEmbedding(Path dir) throws IOException {
        IntQuantSpec spec = new IntQuantSpec(4, 64, true);
        Configuration conf = new Configuration();
        StoreWriter w = StoreWriter.create(spark, dir.toString(), "test-fingerprint", false);
        w.copyModelFile(new org.apache.hadoop.fs.Path(MODEL, "config.json"), "config.json");
        w.writeJson("recipe.json", "{\"method\": \"rtn\", \"abits\": 0}");
        ModelSpec modelSpec = ModelSpecReader.read(MODEL, conf);
        List<TensorRecord> model = new ArrayList<>();
        try (Checkpoint ckpt = Checkpoint.open(MODEL, conf)) {
            ModelLoader loader = new ModelLoader(ckpt, modelSpec, BE);
            for (String name : ckpt.tensorNames()) {
                if (loader.isBlockTensor(name)) continue;
                long[] shape = ckpt.entry(name).shape();
                if (name.equals("lm_head.weight")) {
                    model.add(TensorRecord.floats(-1, name, "weight", ckpt.readFloats(name, shape), shape));
                } else if (name.equals("model.embed_tokens.weight")) {
                    long from = 0;
                    for (int part = 0; from < shape[0]; part++) {
                        long rows = Math.min(1500, shape[0] - from);
                        model.add(TensorRecord.slice(-1, name, "weight", TensorRecord.BFLOAT16, ckpt.readRawRows(name, from, rows), part, shape));
                        from += rows;
                    }
                } else {
                    model.add(TensorRecord.slice(-1, name, "weight", TensorRecord.BFLOAT16, ckpt.readRawRows(name, 0, shape[0]), 0, shape));
                }
            }
            w.commitModelTensors(model.stream().filter(t -> t.part() == 0).toList());
            for (int b = 0; b < modelSpec.numLayers(); b++) {
                w.commitBlock(b, blockRecords(loader.block(b), b, l -> RtnQuantizer.quantize(l.weight(), spec)), List.of());
            }
        }
        w.commit(Map.of());
        // StoreWriter takes one value per tensor: the parts go in as quantize's executors write them, as Parquet rows
        List<org.apache.spark.sql.Row> rows = new ArrayList<>();
        for (TensorRecord t : model) {
            List<Long> shape = new ArrayList<>();
            for (long d : t.shape()) shape.add(d);
            rows.add(org.apache.spark.sql.RowFactory.create(t.module(), t.kind(), t.dtype(), shape, t.bits(), t.groupSize(),
                    t.format(), (long) t.data().length, t.checksum(), t.data(), t.part()));
        }
        Path staged = dir.resolve("staged-block-1");
        spark.createDataFrame(rows, io.blockquant.store.StoreLayout.TENSORS_FILE_SCHEMA).coalesce(1).write().parquet(staged.toString());
        Path blockDir = dir.resolve("tensors").resolve("block=-1");
        try (var old = Files.list(blockDir); var fresh = Files.list(staged)) {
            for (Path f : old.toList()) Files.delete(f);
            for (Path f : fresh.toList()) if (f.getFileName().toString().endsWith(".parquet")) Files.move(f, blockDir.resolve(f.getFileName()));
        }
        return StoreReader.open(spark, dir.toString());
    }

    @Test
    void aSmallMaxShardSizeGivesShardsWhoseIndexCoversEveryTensorOnce(@TempDir Path tmp) throws IOException {
        StoreReader store = storeWithSplitEmbedding(tmp.resolve("store"));
        assertEquals(List.of(0, 1, 2), io.blockquant.store.StoreTensors.list(new Configuration(), store.root(), -1).stream()
                .filter(i -> i.module().equals("model.embed_tokens.weight")).map(i -> i.part()).toList(), "the embedding is stored in 3 parts");
        Path whole = tmp.resolve("whole"), sharded = tmp.resolve("sharded");
        assertEquals(0, Main.execute("export", "--store", store.root().toString(), "--format", "gptq", "--out", whole.toString(),
                "--master", "local[2]"));
        java.io.PrintStream savedErr = System.err;
        java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
        System.setErr(new java.io.PrintStream(err, true, StandardCharsets.UTF_8));
        int rc;
        try {
            rc = Main.execute("export", "--store", store.root().toString(), "--format", "gptq", "--out", sharded.toString(),
                    "--max-shard-size", "1MB", "--master", "local[2]");
        } finally {
            System.setErr(savedErr);
        }
        assertEquals(0, rc, err.toString(StandardCharsets.UTF_8));

        Map<String, Read> one = readCheckpoint(whole), many = readCheckpoint(sharded);
        assertTrue(Files.exists(sharded.resolve("model.safetensors.index.json")));
        assertEquals(one.keySet(), many.keySet());
        for (Map.Entry<String, Read> e : one.entrySet()) {
            Read a = e.getValue(), b = many.get(e.getKey());
            assertEquals(a.dtype(), b.dtype(), e.getKey());
            assertArrayEquals(a.shape(), b.shape(), e.getKey());
            assertEquals(a.data(), b.data(), e.getKey() + ": the same bytes as the unsharded export");
        }
        // shards of at most 1 MB of data, but for the embedding and head (2 MiB each), which get one shard each
        int shards = 0;
        try (var list = Files.list(sharded)) {
            for (Path f : list.filter(f -> f.getFileName().toString().startsWith("model-")).toList()) {
                shards++;
                Map<String, Read> t = readSafetensors(f);
                long bytes = t.values().stream().mapToLong(r -> r.data().remaining()).sum();
                assertTrue(bytes <= 1_000_000 || t.size() == 1, f + ": " + bytes + " bytes in " + t.size() + " tensors");
                if (t.containsKey("model.embed_tokens.weight") || t.containsKey("lm_head.weight")) assertEquals(1, t.size(), f.toString());
            }
        }
        assertTrue(shards >= 5, shards + " shards");
        String log = err.toString(StandardCharsets.UTF_8);
        for (int k = 1; k <= shards; k++) assertTrue(log.contains("export: shard " + k + "/" + shards + " "), log);
        assertTrue(log.contains("export: " + shards + " shards, " + many.size() + " tensors"), log);

        // block -1 as in the source: the stored bf16 bytes copied, the float32 head rounded back to them
        try (Checkpoint source = Checkpoint.open(MODEL, new Configuration())) {
            for (String name : List.of("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight")) {
                assertEquals("BF16", many.get(name).dtype(), name);
                byte[] bytes = new byte[many.get(name).data().remaining()];
                many.get(name).data().duplicate().get(bytes);
                assertArrayEquals(source.readRawRows(name, 0, source.entry(name).shape()[0]), bytes, name);
            }
        }
        for (int b = 0; b < 8; b++) assertLayersMatch(many, "model.layers." + b + ".", store.tensors(b), 4);

        // the project's own reader loads it through the index
        try (Checkpoint ckpt = Checkpoint.open(new org.apache.hadoop.fs.Path(sharded.toString()), new Configuration())) {
            assertEquals(many.keySet(), ckpt.tensorNames());
            for (Map.Entry<String, Read> e : many.entrySet()) {
                assertEquals(e.getValue().dtype(), ckpt.entry(e.getKey()).dtype().name(), e.getKey());
                assertArrayEquals(e.getValue().shape(), ckpt.entry(e.getKey()).shape(), e.getKey());
                if (!e.getValue().dtype().equals("I32")) assertArrayEquals(e.getValue().floats(), ckpt.readFloats(e.getKey()), e.getKey());
            }
        }

        // a sharded export is an export: run again, it is replaced
        assertEquals(0, Main.execute("export", "--store", store.root().toString(), "--format", "gptq", "--out", sharded.toString(),
                "--max-shard-size", "1MB", "--master", "local[2]"));
        assertEquals(many.keySet(), readCheckpoint(sharded).keySet());
        try (var list = Files.list(tmp)) {
            assertEquals(List.of(), list.map(f -> f.getFileName().toString()).filter(f -> f.startsWith(".")).toList(), "no temporary folder left");
        }
    }

    @Test
    void aBadMaxShardSizeIsOneErrorLine(@TempDir Path tmp) {
        java.io.PrintStream savedErr = System.err;
        java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
        System.setErr(new java.io.PrintStream(err, true, StandardCharsets.UTF_8));
        int rc;
        try {
            rc = Main.execute("export", "--store", tmp.resolve("store").toString(), "--format", "gptq", "--out",
                    tmp.resolve("out").toString(), "--max-shard-size", "5XB");
        } finally {
            System.setErr(savedErr);
        }
        String text = err.toString(StandardCharsets.UTF_8);
        assertEquals(2, rc, text);
        assertEquals(1, text.strip().lines().count(), text);
        assertTrue(text.contains("--max-shard-size '5XB'") && text.contains("5GB"), text);
        assertFalse(Files.exists(tmp.resolve("out")));
    }

    @Test
    void whatALayoutCannotHoldIsRefusedNamingTheLayer() {
        // a zero point of 0 has no GPTQ v1 encoding (the export then writes gptq_v2, which holds it)
        int out = 32, in = 32;
        int[] levels = new int[out * in];
        float[] scales = new float[out], zeros = new float[out];
        java.util.Arrays.fill(scales, 0.5f);
        java.util.Arrays.fill(zeros, 3f);
        zeros[5] = 0f;
        Map<String, TensorRecord> kinds = new HashMap<>();
        kinds.put(TensorRecord.QWEIGHT, TensorRecord.packed(0, "mlp.up_proj", levels, 4, 0, "int-asym", out, in));
        kinds.put(BlockRecords.SCALES, TensorRecord.floats(0, "mlp.up_proj", BlockRecords.SCALES, scales, out, 1));
        kinds.put(BlockRecords.ZEROS, TensorRecord.floats(0, "mlp.up_proj", BlockRecords.ZEROS, zeros, out, 1));
        kinds.put(BlockRecords.G_IDX, TensorRecord.ints(0, "mlp.up_proj", BlockRecords.G_IDX, new int[in], in));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> GptqTensors.of("model.layers.0.mlp.up_proj", kinds, false));
        assertTrue(e.getMessage().contains("model.layers.0.mlp.up_proj") && e.getMessage().contains("row 5"), e.getMessage());
        assertFalse(GptqTensors.fitsV1(zeros, 4));
        assertEquals(4, GptqTensors.of("model.layers.0.mlp.up_proj", kinds, true).size(), "gptq_v2 holds it");
        // INT weights are not re-quantized to FP8
        e = assertThrows(IllegalArgumentException.class, () -> Fp8Tensors.of("model.layers.0.mlp.up_proj", kinds));
        assertTrue(e.getMessage().contains("model.layers.0.mlp.up_proj") && e.getMessage().contains("--wformat fp8"), e.getMessage());
    }
}
