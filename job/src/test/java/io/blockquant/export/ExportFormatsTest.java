package io.blockquant.export;

import static io.blockquant.export.CheckpointExportTest.JSON;
import static io.blockquant.export.CheckpointExportTest.assertLayersMatch;
import static io.blockquant.export.CheckpointExportTest.byModule;
import static io.blockquant.export.CheckpointExportTest.e4m3;
import static io.blockquant.export.CheckpointExportTest.half;
import static io.blockquant.export.CheckpointExportTest.readCheckpoint;
import static io.blockquant.export.CheckpointExportTest.store;
import static io.blockquant.export.CheckpointExportTest.storeWeightsWithHalfScales;
import static io.blockquant.export.CheckpointExportTest.streamValue;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.blockquant.algo.FpQuantizedLinear;
import io.blockquant.algo.RtnQuantizer;
import io.blockquant.algo.StoredWeight;
import io.blockquant.export.CheckpointExportTest.Read;
import io.blockquant.nn.Linear;
import io.blockquant.quant.FpFormat;
import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.FpQuantizer;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.ScaleConstraint;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.StoreReader;
import io.blockquant.store.TensorRecord;
import io.blockquant.tensor.Nd4jBackend;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Function;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The export's newer layouts read back by readers written here from the published rules alone (never through the
 * exporter's code): GPTQ v2 zero points; compressed-tensors {@code pack_to_int32} streams (signed levels offset by
 * 2^(b−1), little-endian along the input dimension for weights and the output dimension for zero points); E2M1
 * nibbles (index into ±{0, .5, 1, 1.5, 2, 3, 4, 6}, sign in bit 3, even column low); E4M3 and E8M0 scales from their
 * definitions. And the output folder's safety: a folder the export did not write is refused byte-identical.
 */
class ExportFormatsTest {

    static SparkSession spark;

    /** Blocks of tiny-llama in each test store: the layouts are per layer, two blocks show the per-block global scale. */
    static final int BLOCKS = 2;

    @BeforeAll
    static void startSpark() {
        CheckpointExportTest.startSpark();
        spark = CheckpointExportTest.spark;
    }

    @AfterAll
    static void stopSpark() {
        CheckpointExportTest.stopSpark();
    }

    static final float[] E2M1 = {0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f};

    /** E2M1 code → value from OCP's table: bits 0..2 index the magnitudes, bit 3 the sign. */
    static float e2m1(int code) {
        float v = E2M1[code & 7];
        return (code & 8) != 0 ? -v : v;
    }

    /**
     * Asymmetric RTN W4 g64, except block 0's first linear, quantized on |W|: every group's minimum is then 0
     * (min-max ranges are widened to include 0), so every zero point of that layer is 0 — a store v1 cannot hold.
     */
    static Function<Linear, StoredWeight> asymWithZeroZeros(IntQuantSpec spec) {
        int[] seen = {0};
        return l -> {
            if (seen[0]++ > 0) return RtnQuantizer.quantize(l.weight(), spec);
            float[] w = l.weight().toFloats();
            for (int i = 0; i < w.length; i++) w[i] = Math.abs(w[i]);
            return RtnQuantizer.quantize(Nd4jBackend.INSTANCE.fromFloats(w, (int) l.weight().size(0), (int) l.weight().size(1)), spec);
        };
    }

    @Test
    void zeroPointsOfZeroExportAsGptqV2AndAsPackQuantizedExactly(@TempDir Path tmp) throws Exception {
        IntQuantSpec spec = new IntQuantSpec(4, 64, false);
        StoreReader store = store(tmp.resolve("store"), "{\"method\": \"rtn\", \"abits\": 0, \"act_order\": false}", asymWithZeroZeros(spec), BLOCKS);
        float[] zeros0 = byModule(store.tensors(0)).get("self_attn.q_proj").get(BlockRecords.ZEROS).toFloats();
        assertTrue(zeros0.length > 0 && java.util.Arrays.stream(toDoubles(zeros0)).allMatch(z -> z == 0), "the layer's zero points are all 0");

        Path gptq = tmp.resolve("gptq");
        CheckpointExport.Result r = CheckpointExport.run(spark, store.root().toString(), CheckpointExport.Format.GPTQ, gptq.toString());
        assertEquals("gptq_v2", r.layout());
        JsonNode q = JSON.readTree(gptq.resolve("config.json").toFile()).get("quantization_config");
        assertEquals("gptq_v2", q.get("checkpoint_format").asText());
        assertFalse(q.get("sym").asBoolean());
        Map<String, Read> t = readCheckpoint(gptq);
        for (int b = 0; b < BLOCKS; b++) assertLayersMatch(t, "model.layers." + b + ".", store.tensors(b), 4, true);
        Map<String, Read> py = pythonReader(gptq, tmp);
        for (int b = 0; b < BLOCKS; b++) assertPythonReads(py, b, storeWeightsWithHalfScales(store.tensors(b)), quantized(store.tensors(b)));

        Path ct = tmp.resolve("ct");
        r = CheckpointExport.run(spark, store.root().toString(), CheckpointExport.Format.COMPRESSED_TENSORS, ct.toString());
        assertEquals("pack-quantized", r.layout());
        assertNull(r.worstLayer(), "integer layouts are exact");
        JsonNode c = JSON.readTree(ct.resolve("config.json").toFile()).get("quantization_config");
        assertEquals("compressed-tensors", c.get("quant_method").asText());
        assertEquals("pack-quantized", c.get("format").asText());
        JsonNode w = c.get("config_groups").get("group_0").get("weights");
        assertEquals(4, w.get("num_bits").asInt());
        assertEquals("int", w.get("type").asText());
        assertFalse(w.get("symmetric").asBoolean());
        assertEquals("group", w.get("strategy").asText());
        assertEquals(64, w.get("group_size").asInt());
        assertTrue(c.get("config_groups").get("group_0").get("input_activations").isNull());
        t = readCheckpoint(ct);
        for (int b = 0; b < BLOCKS; b++) assertPackQuantizedMatches(t, "model.layers." + b + ".", store.tensors(b), 4);
        py = pythonReader(ct, tmp);
        for (int b = 0; b < BLOCKS; b++) assertPythonReads(py, b, storeWeightsWithHalfScales(store.tensors(b)), quantized(store.tensors(b)));
    }

    /**
     * pack-quantized read by compressed-tensors' rules: {@code q = stream(weight_packed row o)[i] − 2^(b−1)},
     * {@code zp = stream(weight_zero_point column g)[o] − 2^(b−1)}, {@code W = weight_scale[o, g] · (q − zp)} with
     * g = i / group; equal to the store's dequantization with float16 scales, bit for bit.
     */
    static void assertPackQuantizedMatches(Map<String, Read> t, String prefix, List<TensorRecord> block, int bits) {
        Map<String, float[]> expected = storeWeightsWithHalfScales(block);
        int layers = 0;
        for (Map.Entry<String, Map<String, TensorRecord>> m : byModule(block).entrySet()) {
            if (!m.getValue().containsKey(TensorRecord.QWEIGHT)) continue;
            layers++;
            String layer = prefix + m.getKey();
            Read packed = t.get(layer + ".weight_packed"), shape = t.get(layer + ".weight_shape"), scale = t.get(layer + ".weight_scale");
            Read zp = t.get(layer + ".weight_zero_point");
            assertEquals("I32", packed.dtype(), layer);
            assertEquals("I64", shape.dtype(), layer);
            assertEquals("F16", scale.dtype(), layer);
            long[] dims = new long[2];
            shape.data().duplicate().order(java.nio.ByteOrder.LITTLE_ENDIAN).asLongBuffer().get(dims);
            int out = (int) dims[0], in = (int) dims[1], groups = (int) scale.shape()[1], words = in * bits / 32, offset = 1 << (bits - 1);
            assertArrayEquals(new long[] {out, words}, packed.shape(), layer);
            int[] p = packed.ints();
            float[] s = scale.floats();
            int[] z = zp == null ? null : zp.ints();
            if (zp != null) assertArrayEquals(new long[] {out * bits / 32, groups}, zp.shape(), layer);
            int[] gIdx = t.containsKey(layer + ".weight_g_idx") ? t.get(layer + ".weight_g_idx").ints() : null;
            float[] dq = new float[out * in];
            for (int o = 0; o < out; o++) {
                final int row = o;
                for (int i = 0; i < in; i++) {
                    int g = gIdx != null ? gIdx[i] : i / (in / groups);
                    int qv = streamValue(j -> p[row * words + j], words, i, bits) - offset;
                    int zv = z == null ? 0 : streamValue(j -> z[j * groups + g], out * bits / 32, row, bits) - offset;
                    dq[o * in + i] = s[o * groups + g] * (qv - zv);
                }
            }
            assertArrayEquals(expected.get(m.getKey() + ".weight"), dq, layer + ": dequantized weight");
            assertFalse(t.containsKey(layer + ".weight"), layer);
        }
        assertEquals(7, layers);
    }

    @Test
    void actOrderStoreIsPackQuantizedWithWeightGIdx(@TempDir Path tmp) throws Exception {
        StoreReader store = store(tmp.resolve("store"), "{\"method\": \"gptq\", \"abits\": 0, \"act_order\": true, \"damp\": 0.01}",
                CheckpointExportTest.gptqActOrderInBlock0(new IntQuantSpec(4, 64, false)), 1);
        Path out = tmp.resolve("ct");
        CheckpointExport.run(spark, store.root().toString(), CheckpointExport.Format.COMPRESSED_TENSORS, out.toString());
        JsonNode w = JSON.readTree(out.resolve("config.json").toFile()).get("quantization_config").get("config_groups").get("group_0").get("weights");
        assertEquals("group", w.get("actorder").asText());
        Map<String, Read> t = readCheckpoint(out);
        int[] gIdx = t.get("model.layers.0.mlp.down_proj.weight_g_idx").ints();
        boolean permuted = false;
        for (int i = 1; i < gIdx.length; i++) permuted |= gIdx[i] < gIdx[i - 1];
        assertTrue(permuted, "act-order: weight_g_idx is not monotone");
        assertPackQuantizedMatches(t, "model.layers.0.", store.tensors(0), 4);
        assertPythonReads(pythonReader(out, tmp), 0, storeWeightsWithHalfScales(store.tensors(0)), quantized(store.tensors(0)));
    }

    @Test
    void w8a8SymmetricPerChannelIsIntQuantizedWithDynamicTokenActivations(@TempDir Path tmp) throws Exception {
        IntQuantSpec spec = new IntQuantSpec(8, 0, true);
        StoreReader store = store(tmp.resolve("store"), "{\"method\": \"rtn\", \"abits\": 8, \"aformat\": \"int\"}",
                l -> RtnQuantizer.quantize(l.weight(), spec), BLOCKS);
        Path out = tmp.resolve("ct");
        CheckpointExport.Result r = CheckpointExport.run(spark, store.root().toString(), CheckpointExport.Format.COMPRESSED_TENSORS, out.toString());
        assertEquals("int-quantized", r.layout());
        JsonNode g = JSON.readTree(out.resolve("config.json").toFile()).get("quantization_config").get("config_groups").get("group_0");
        assertEquals("channel", g.get("weights").get("strategy").asText());
        assertTrue(g.get("weights").get("symmetric").asBoolean());
        JsonNode a = g.get("input_activations");
        assertEquals(8, a.get("num_bits").asInt());
        assertEquals("token", a.get("strategy").asText());
        assertTrue(a.get("dynamic").asBoolean() && a.get("symmetric").asBoolean());
        Map<String, Read> t = readCheckpoint(out);
        for (int b = 0; b < BLOCKS; b++) {
            Map<String, float[]> expected = new HashMap<>();
            BlockRecords.dequantize(store.tensors(b), "", expected, new HashMap<>());
            for (Map.Entry<String, Map<String, TensorRecord>> m : byModule(store.tensors(b)).entrySet()) {
                if (!m.getValue().containsKey(TensorRecord.QWEIGHT)) continue;
                String layer = "model.layers." + b + "." + m.getKey();
                Read w = t.get(layer + ".weight"), s = t.get(layer + ".weight_scale");
                assertEquals("I8", w.dtype(), layer);
                assertEquals("F32", s.dtype(), layer);
                assertFalse(t.containsKey(layer + ".weight_zero_point"), layer + ": symmetric");
                int rows = (int) w.shape()[0], cols = (int) w.shape()[1];
                float[] sc = s.floats(), dq = new float[rows * cols];
                for (int o = 0; o < rows; o++) for (int i = 0; i < cols; i++) dq[o * cols + i] = sc[o] * w.data().get(o * cols + i);
                assertArrayEquals(expected.get(m.getKey() + ".weight"), dq, layer);
            }
        }
        Map<String, Read> py = pythonReader(out, tmp);
        for (int b = 0; b < BLOCKS; b++) {
            Map<String, float[]> expected = new HashMap<>();
            BlockRecords.dequantize(store.tensors(b), "", expected, new HashMap<>());
            assertPythonReads(py, b, expected, quantized(store.tensors(b)));
        }
        // asymmetric W8A8 has no vLLM kernel: refused before anything is written, naming the fix
        StoreReader asym = store(tmp.resolve("asym"), "{\"method\": \"rtn\", \"abits\": 8, \"aformat\": \"int\"}",
                l -> RtnQuantizer.quantize(l.weight(), new IntQuantSpec(8, 0, false)), 1);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CheckpointExport.run(spark, asym.root().toString(),
                CheckpointExport.Format.COMPRESSED_TENSORS, tmp.resolve("asym-ct").toString()));
        assertTrue(e.getMessage().contains("--sym"), e.getMessage());
        assertFalse(Files.exists(tmp.resolve("asym-ct")));
    }

    static Function<Linear, StoredWeight> fp4(FpQuantSpec spec) {
        return l -> {
            int rows = (int) l.weight().size(0), cols = (int) l.weight().size(1), groups = cols / spec.groupFor(cols);
            byte[] codes = new byte[rows * cols];
            float[] scales = FpQuantizer.encodeWeight(l.weight().toFloats(), rows, cols, spec, codes);
            int[] gIdx = new int[cols];
            for (int c = 0; c < cols; c++) gIdx[c] = c / spec.groupFor(cols);
            return new FpQuantizedLinear(rows, cols, spec, groups, codes, scales, gIdx, 0);
        };
    }

    @Test
    void fp4StoresExportAsMxfp4ExactlyAndAsNvfp4WithTheAddedErrorMeasured(@TempDir Path tmp) throws Exception {
        // M1 (power-of-two scales): MXFP4, E8M0 per 32 columns, exact
        StoreReader m1 = store(tmp.resolve("m1"), "{\"method\": \"rtn\", \"abits\": 0}", fp4(new FpQuantSpec(FpFormat.E2M1, 64, ScaleConstraint.M1)), BLOCKS);
        Path mx = tmp.resolve("mx");
        CheckpointExport.Result r = CheckpointExport.run(spark, m1.root().toString(), CheckpointExport.Format.COMPRESSED_TENSORS, mx.toString());
        assertEquals("mxfp4-pack-quantized", r.layout());
        assertNull(r.worstLayer());
        JsonNode w = JSON.readTree(mx.resolve("config.json").toFile()).get("quantization_config").get("config_groups").get("group_0").get("weights");
        assertEquals("float", w.get("type").asText());
        assertEquals(32, w.get("group_size").asInt());
        assertEquals("group", w.get("strategy").asText());
        Map<String, Read> t = readCheckpoint(mx);
        Map<String, Read> pyMx = pythonReader(mx, tmp);
        for (int b = 0; b < BLOCKS; b++) {
            Map<String, float[]> expected = new HashMap<>();
            BlockRecords.dequantize(m1.tensors(b), "", expected, new HashMap<>());
            for (String module : quantized(m1.tensors(b))) {
                String layer = "model.layers." + b + "." + module;
                Read s = t.get(layer + ".weight_scale");
                assertEquals("U8", s.dtype(), layer);
                float[] dq = fp4Weight(t.get(layer + ".weight_packed"), s.shape(), 32, k -> (float) Math.scalb(1.0, (s.data().get(k) & 0xff) - 127));
                assertArrayEquals(expected.get(module + ".weight"), dq, layer);
            }
            assertPythonReads(pyMx, b, expected, quantized(m1.tensors(b)));
        }

        // no constraint: NVFP4, E4M3 per 16 columns over a float32 global scale shared by the block
        StoreReader plain = store(tmp.resolve("plain"), "{\"method\": \"rtn\", \"abits\": 0}", fp4(new FpQuantSpec(FpFormat.E2M1, 64, ScaleConstraint.NONE)), BLOCKS);
        Path nv = tmp.resolve("nv");
        r = CheckpointExport.run(spark, plain.root().toString(), CheckpointExport.Format.COMPRESSED_TENSORS, nv.toString());
        assertEquals("nvfp4-pack-quantized", r.layout());
        JsonNode g = JSON.readTree(nv.resolve("config.json").toFile()).get("quantization_config").get("config_groups").get("group_0");
        assertEquals("tensor_group", g.get("weights").get("strategy").asText());
        assertEquals(16, g.get("weights").get("group_size").asInt());
        t = readCheckpoint(nv);
        Map<String, Read> py = pythonReader(nv, tmp);
        double errorSq = 0, weightSq = 0;
        for (int b = 0; b < BLOCKS; b++) {
            Map<String, float[]> expected = new HashMap<>();
            BlockRecords.dequantize(plain.tensors(b), "", expected, new HashMap<>());
            Float shared = null;
            for (String module : quantized(plain.tensors(b))) {
                String layer = "model.layers." + b + "." + module;
                Read s = t.get(layer + ".weight_scale"), gs = t.get(layer + ".weight_global_scale");
                assertEquals("F8_E4M3", s.dtype(), layer);
                assertEquals("F32", gs.dtype(), layer);
                float global = gs.floats()[0];
                if (shared == null) shared = global;
                assertEquals(shared, global, layer + ": one global scale per block (fused q/k/v, gate/up)");
                float[] dq = fp4Weight(t.get(layer + ".weight_packed"), s.shape(), 16, k -> e4m3(s.data().get(k) & 0xff) / global);
                float[] ref = expected.get(module + ".weight");
                assertPythonReads(py, b, Map.of(module + ".weight", dq), List.of(module));
                for (int k = 0; k < ref.length; k++) {
                    double d = dq[k] - ref[k];
                    errorSq += d * d;
                    weightSq += (double) ref[k] * ref[k];
                    // E4M3 rounds a normal scale by at most 2^-4 of itself
                    assertTrue(Math.abs(d) <= Math.abs(ref[k]) * 0x1p-4 * 1.0001 + 1e-12, layer + " element " + k + ": " + dq[k] + " vs " + ref[k]);
                }
            }
        }
        double measured = Math.sqrt(errorSq / weightSq);
        assertTrue(measured > 1e-4 && measured < 0.05, "added relative error " + measured);
        assertEquals(measured, r.addedError(), measured * 1e-6, "the export reports the error a reader sees");
        assertTrue(r.worstError() >= r.addedError() && r.worstLayer().startsWith("model.layers."), r.toString());
    }

    static List<String> quantized(List<TensorRecord> block) {
        return byModule(block).entrySet().stream().filter(e -> e.getValue().containsKey(TensorRecord.QWEIGHT)).map(Map.Entry::getKey).toList();
    }

    /** An FP4 weight from its uint8 nibbles (even column low) and a scale per {@code n} columns given by index. */
    static float[] fp4Weight(Read packed, long[] scaleShape, int n, java.util.function.IntFunction<Float> scale) {
        assertEquals("U8", packed.dtype());
        int out = (int) packed.shape()[0], in = (int) packed.shape()[1] * 2, blocks = (int) scaleShape[1];
        assertEquals(in / n, blocks);
        float[] w = new float[out * in];
        for (int o = 0; o < out; o++) {
            for (int i = 0; i < in; i++) {
                int b = packed.data().get(o * in / 2 + i / 2) & 0xff;
                w[o * in + i] = e2m1(i % 2 == 0 ? b & 0xf : b >> 4) * scale.apply(o * blocks + i / n);
            }
        }
        return w;
    }

    @Test
    void exportOntoSomeoneElsesCheckpointRefusesAndLeavesItByteIdentical(@TempDir Path tmp) throws Exception {
        StoreReader store = store(tmp.resolve("store"), "{\"method\": \"rtn\", \"abits\": 0}",
                l -> RtnQuantizer.quantize(l.weight(), new IntQuantSpec(4, 64, true)), 1);
        // a checkpoint someone else wrote: model.safetensors and a config.json with a quantization_config
        Path theirs = Files.createDirectories(tmp.resolve("theirs"));
        Files.write(theirs.resolve("model.safetensors"), new byte[] {1, 2, 3, 4});
        Files.writeString(theirs.resolve("config.json"), "{\"quantization_config\": {\"quant_method\": \"gptq\"}}");
        Files.writeString(theirs.resolve("README.md"), "mine");
        Map<String, String> before = digests(theirs);
        for (String format : List.of("gptq", "compressed-tensors")) {
            java.io.PrintStream saved = System.err;
            java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
            System.setErr(new java.io.PrintStream(err, true, java.nio.charset.StandardCharsets.UTF_8));
            int rc;
            try {
                rc = io.blockquant.cli.Main.execute("export", "--store", store.root().toString(), "--format", format, "--out", theirs.toString(),
                        "--master", "local[2]");
            } finally {
                System.setErr(saved);
            }
            String text = err.toString(java.nio.charset.StandardCharsets.UTF_8).strip();
            assertEquals(2, rc, text);
            assertEquals(1, text.lines().count(), text);
            assertTrue(text.contains("theirs") && text.contains(ExportFolder.MARKER) && text.contains("--out"), text);
            assertEquals(before, digests(theirs), "byte-identical after a refused export");
        }
        // its own earlier export is replaced whole: new marker, nothing left aside
        Path ours = tmp.resolve("ours");
        CheckpointExport.run(spark, store.root().toString(), CheckpointExport.Format.GPTQ, ours.toString());
        assertTrue(Files.exists(ours.resolve(ExportFolder.MARKER)));
        Files.writeString(ours.resolve("stale.txt"), "from before");
        CheckpointExport.Result r = CheckpointExport.run(spark, store.root().toString(), CheckpointExport.Format.COMPRESSED_TENSORS, ours.toString());
        assertEquals("pack-quantized", r.layout());
        assertFalse(Files.exists(ours.resolve("stale.txt")), "the earlier export went whole");
        assertTrue(Files.readString(ours.resolve(ExportFolder.MARKER)).contains("pack-quantized"));
        try (var list = Files.list(tmp)) {
            assertEquals(List.of(), list.map(f -> f.getFileName().toString()).filter(f -> f.startsWith(".")).toList(), "nothing left aside");
        }
    }

    /**
     * The checkpoint as cluster/gpu/check-export.py's numpy reader dequantizes it for the stock model (the GPU check's
     * reader, written from the published layouts), read back here; null when python3 with numpy is not installed.
     */
    static Map<String, Read> pythonReader(Path checkpoint, Path tmp) throws Exception {
        Path script = io.blockquant.Fixtures.ROOT.getParent().resolve("cluster/gpu/check-export.py");
        Path out = Files.createTempFile(tmp, "dequantized", ".safetensors");
        Process p;
        try {
            p = new ProcessBuilder("python3", script.toString(), "--dequantize", checkpoint.toString(), out.toString())
                    .redirectErrorStream(true).start();
        } catch (IOException e) {
            return null;
        }
        String log = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        int rc = p.waitFor();
        if (rc != 0 && log.contains("No module named 'numpy'")) return null;
        assertEquals(0, rc, log);
        return CheckpointExportTest.readSafetensors(out);
    }

    /** Every quantized layer of {@code blocks} as the python reader gives it equals {@code expected} (by store module), bit for bit. */
    static void assertPythonReads(Map<String, Read> python, int block, Map<String, float[]> expected, List<String> modules) {
        org.junit.jupiter.api.Assumptions.assumeTrue(python != null, "python3 with numpy is not installed");
        for (String module : modules) {
            String name = "model.layers." + block + "." + module + ".weight";
            Read r = python.get(name);
            assertEquals("F32", r.dtype(), name);
            assertArrayEquals(expected.get(module + ".weight"), r.floats(), name + ": check-export.py's reader");
        }
    }

    static Map<String, String> digests(Path dir) throws Exception {
        Map<String, String> out = new TreeMap<>();
        try (var files = Files.walk(dir)) {
            for (Path f : files.filter(Files::isRegularFile).toList()) {
                out.put(dir.relativize(f).toString(), HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f))));
            }
        }
        return out;
    }

    private static double[] toDoubles(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) d[i] = f[i];
        return d;
    }
}
