package io.blockquant.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.Fixtures;
import io.blockquant.bench.SyntheticCheckpoint.Settings;
import io.blockquant.bench.SyntheticCheckpoint.Shape;
import io.blockquant.bench.SyntheticCheckpoint.TensorPlan;
import io.blockquant.cli.EvalCommandTest;
import io.blockquant.cli.SynthCommand;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.DType;
import io.blockquant.model.FloatRounding;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.SafetensorsFile;
import io.blockquant.model.TextTokenizer;
import io.blockquant.nn.CausalLm;
import io.blockquant.tensor.Nd4jBackend;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The synthetic checkpoint as the project's readers and loader see it, and the {@code synth} command's errors. */
class SyntheticCheckpointTest {

    private static final Configuration CONF = new Configuration();
    /** Llama-3-8B's kinds of dimensions (GQA 8/4, untied head), small enough to write in well under a second. */
    private static final Shape SMALL = SyntheticCheckpoint.preset("llama-3-8b").with(256, 8, 4, 512, 4096);

    @TempDir
    java.nio.file.Path tmp;

    private Path write(String name, Settings s) {
        Path out = new Path(tmp.resolve(name).toString());
        SyntheticCheckpoint.write(out, CONF, s, null);
        return out;
    }

    private static Settings small(int blocks) {
        return Settings.of(SMALL, blocks).tokenizerDir(new Path(Fixtures.model("tiny-llama").toUri()));
    }

    @Test
    void opensWithTheProjectsReadersWithHuggingFaceNamesAndShapes() throws Exception {
        Path dir = write("ck", small(2));
        ModelSpec spec = ModelSpecReader.read(dir, CONF);
        assertEquals(256, spec.hiddenSize());
        assertEquals(8, spec.numHeads());
        assertEquals(4, spec.numKvHeads());
        assertEquals(32, spec.headDim());
        assertEquals(512, spec.intermediateSize());
        assertEquals(4096, spec.vocabSize());
        assertEquals(2, spec.numLayers());
        assertFalse(spec.tieWordEmbeddings());
        assertEquals(1e-5f, spec.normEps());
        // rope_theta 500000 read from the top level: the second frequency is 500000^(-2/32), rounded to bf16 (torch_dtype)
        assertEquals(FloatRounding.toBfloat16((float) (1 / Math.pow(500000, 2.0 / 32))), spec.invFreq()[1]);

        Map<String, long[]> expected = new HashMap<>();
        expected.put("model.embed_tokens.weight", new long[] {4096, 256});
        expected.put("lm_head.weight", new long[] {4096, 256});
        expected.put("model.norm.weight", new long[] {256});
        for (int i = 0; i < 2; i++) {
            String p = "model.layers." + i + ".";
            expected.put(p + "input_layernorm.weight", new long[] {256});
            expected.put(p + "post_attention_layernorm.weight", new long[] {256});
            expected.put(p + "self_attn.q_proj.weight", new long[] {256, 256});
            expected.put(p + "self_attn.k_proj.weight", new long[] {128, 256});
            expected.put(p + "self_attn.v_proj.weight", new long[] {128, 256});
            expected.put(p + "self_attn.o_proj.weight", new long[] {256, 256});
            expected.put(p + "mlp.gate_proj.weight", new long[] {512, 256});
            expected.put(p + "mlp.up_proj.weight", new long[] {512, 256});
            expected.put(p + "mlp.down_proj.weight", new long[] {256, 512});
        }
        try (Checkpoint ck = Checkpoint.open(dir, CONF)) {
            assertEquals(expected.keySet(), ck.tensorNames());
            for (var e : expected.entrySet()) {
                SafetensorsFile.Entry entry = ck.entry(e.getKey());
                assertArrayEquals(e.getValue(), entry.shape(), e.getKey());
                assertEquals(DType.BF16, entry.dtype(), e.getKey());
            }
        }
        JsonNode config = new ObjectMapper().readTree(tmp.resolve("ck/config.json").toFile());
        assertEquals("LlamaForCausalLM", config.get("architectures").get(0).asText());
        assertEquals("bfloat16", config.get("torch_dtype").asText());
        assertEquals("silu", config.get("hidden_act").asText());
        assertEquals(500000.0, config.get("rope_theta").asDouble());
        for (String f : List.of("tokenizer.json", "tokenizer_config.json")) {
            assertEquals(-1, Files.mismatch(Fixtures.model("tiny-llama").resolve(f), tmp.resolve("ck").resolve(f)), f);
        }
        try (var files = Files.list(tmp)) {
            assertEquals(List.of("ck"), files.map(f -> f.getFileName().toString()).toList(), "no temporary folder or .crc file left");
        }
    }

    @Test
    void indexCoversEveryTensorOnceAndShardsRespectTheCap() throws Exception {
        long cap = 600_000; // a block's q/o (131 kB each), MLP (262 kB each): several shards; the 2 MB embedding alone
        Path dir = write("ck", small(3).shardBytes(cap));
        JsonNode index = new ObjectMapper().readTree(tmp.resolve("ck/" + SyntheticCheckpoint.INDEX).toFile());
        Map<String, String> weightMap = new HashMap<>();
        index.get("weight_map").fields().forEachRemaining(e -> weightMap.put(e.getKey(), e.getValue().asText()));
        List<TensorPlan> plan = SyntheticCheckpoint.tensors(SMALL, 3);
        assertEquals(plan.stream().map(TensorPlan::name).collect(Collectors.toSet()), weightMap.keySet());
        assertEquals(plan.stream().mapToLong(TensorPlan::bytes).sum(), index.get("metadata").get("total_size").asLong());

        Set<String> shardFiles = new HashSet<>(weightMap.values());
        int n = shardFiles.size();
        assertTrue(n >= 4, "expected several shards, got " + n);
        long seen = 0;
        Set<String> tensorsInShards = new HashSet<>();
        for (int k = 1; k <= n; k++) {
            String name = String.format("model-%05d-of-%05d.safetensors", k, n);
            assertTrue(shardFiles.contains(name), name + " missing from " + shardFiles);
            try (SafetensorsFile f = SafetensorsFile.open(dir.getFileSystem(CONF), new Path(dir, name))) {
                long bytes = f.entries().values().stream().mapToLong(e -> e.end() - e.begin()).sum();
                assertTrue(bytes <= cap || f.entries().size() == 1, name + " holds " + bytes + " tensor bytes over the cap " + cap);
                for (String t : f.entries().keySet()) {
                    assertTrue(tensorsInShards.add(t), t + " is in two shards");
                    assertEquals(name, weightMap.get(t), "index places " + t);
                }
                seen += bytes;
                assertEquals("pt", f.metadata().get("format"));
            }
        }
        assertEquals(weightMap.keySet(), tensorsInShards);
        assertEquals(index.get("metadata").get("total_size").asLong(), seen);
        assertEquals(SyntheticCheckpoint.shardName(0, n), weightMap.get("model.embed_tokens.weight"));
        try (Checkpoint ck = Checkpoint.open(dir, CONF)) {
            assertEquals(plan.size(), ck.tensorNames().size());
        }
    }

    @Test
    void sameSeedSameBytesWhateverTheThreads() throws Exception {
        write("a", small(2).threads(1));
        write("b", small(2).threads(3));
        write("c", small(2).seed(1));
        String shard = SyntheticCheckpoint.shardName(0, 1);
        assertEquals(-1, Files.mismatch(tmp.resolve("a").resolve(shard), tmp.resolve("b").resolve(shard)));
        assertNotEquals(-1, Files.mismatch(tmp.resolve("a").resolve(shard), tmp.resolve("c").resolve(shard)));
    }

    @Test
    void tensorsDoNotDependOnBlockCountOrSharding() {
        Path two = write("two", small(2));
        Path three = write("three", small(3).shardBytes(300_000));
        try (Checkpoint a = Checkpoint.open(two, CONF); Checkpoint b = Checkpoint.open(three, CONF)) {
            assertTrue(b.tensorNames().containsAll(a.tensorNames()));
            for (String t : a.tensorNames()) assertArrayEquals(a.readFloats(t), b.readFloats(t), t);
            assertFalse(java.util.Arrays.equals(b.readFloats("model.layers.1.mlp.up_proj.weight"),
                    b.readFloats("model.layers.2.mlp.up_proj.weight")), "each tensor has its own values");
        }
    }

    @Test
    void valuesHaveTheIntendedStdAcrossChunks() {
        // hidden 2048 × vocab 5000: 10.2 M values, more than one 8 M-value chunk
        Shape wide = SyntheticCheckpoint.preset("llama-2-7b").with(2048, 16, 4, 256, 5000);
        Path dir = write("ck", Settings.of(wide, 1).std(0.05));
        try (Checkpoint ck = Checkpoint.open(dir, CONF)) {
            float[] e = ck.readFloats("model.embed_tokens.weight");
            assertTrue(e.length > SyntheticCheckpoint.CHUNK_ELEMENTS);
            double sum = 0, sq = 0, max = 0;
            for (float v : e) {
                sum += v;
                sq += (double) v * v;
                max = Math.max(max, Math.abs(v));
            }
            double mean = sum / e.length, std = Math.sqrt(sq / e.length - mean * mean);
            assertEquals(0.05, std, 0.05 * 0.01, "std");
            assertEquals(0, mean, 1e-4, "mean");
            assertTrue(max <= 0.05 * Math.sqrt(3) * (1 + 1.0 / 128), "uniform on [-a, a], a = std·√3; max " + max);
            // the second chunk is not a copy of the first
            int c = SyntheticCheckpoint.CHUNK_ELEMENTS;
            assertFalse(java.util.Arrays.equals(e, 0, 1000, e, c, c + 1000));

            float[] q = ck.readFloats("model.layers.0.self_attn.q_proj.weight");
            double qs = 0;
            for (float v : q) qs += (double) v * v;
            assertEquals(0.05, Math.sqrt(qs / q.length), 0.05 * 0.02, "q_proj std");
            for (String norm : List.of("model.layers.0.input_layernorm.weight", "model.norm.weight")) {
                for (float v : ck.readFloats(norm)) assertEquals(1f, v, norm);
            }
        }
        // the bytes are bf16 rounded to nearest even, as FloatRounding rounds
        byte[] buf = new byte[64];
        float[] exact = new float[32];
        TensorPlan t = new TensorPlan("x", new long[] {32}, false);
        SyntheticCheckpoint.fill(t, 7, 0.02, 0, buf, 32);
        java.util.SplittableRandom r = new java.util.SplittableRandom(SyntheticCheckpoint.chunkSeed(7, "x", 0));
        float scale = (float) (0.02 * Math.sqrt(3.0) / (1 << 23));
        for (int i = 0; i < 32; i += 2) {
            long x = r.nextLong();
            exact[i] = ((int) (x >>> 40) - (1 << 23)) * scale;
            exact[i + 1] = (((int) (x >>> 16) & 0xffffff) - (1 << 23)) * scale;
        }
        for (int i = 0; i < 32; i++) {
            int bits = (buf[2 * i] & 0xff) | (buf[2 * i + 1] & 0xff) << 8;
            assertEquals(FloatRounding.toBfloat16(exact[i]), Float.intBitsToFloat(bits << 16), "value " + i);
        }
    }

    @Test
    void theModelLoaderBuildsItAndTheForwardPassIsFinite() {
        Path dir = write("ck", small(2));
        ModelSpec spec = ModelSpecReader.read(dir, CONF);
        int[] ids;
        try (TextTokenizer tok = TextTokenizer.load(dir, CONF)) {
            ids = tok.encode("In the beginning God created the heaven and the earth.");
        }
        assertTrue(ids.length >= 5);
        try (Checkpoint ck = Checkpoint.open(dir, CONF)) {
            CausalLm lm = new ModelLoader(ck, spec, Nd4jBackend.INSTANCE).model();
            assertEquals(2, lm.blocks().size());
            float[] logits = lm.forward(new int[][] {ids}).toFloats();
            assertEquals((long) ids.length * 4096, logits.length);
            double sq = 0;
            for (float v : logits) {
                assertTrue(Float.isFinite(v));
                sq += (double) v * v;
            }
            double rms = Math.sqrt(sq / logits.length);
            assertTrue(rms > 0.1 && rms < 10, "logits of O(1), got rms " + rms);
        }
    }

    /** Run with -Dbench=true: two blocks of Llama-3-8B's real widths (vocabulary cut to the tokenizer's 4096). */
    @Test
    void realWidthBlocksKeepTheForwardPassFinite() {
        assumeTrue(Boolean.getBoolean("bench"), "real-width check (0.9 GB): run with -Dbench=true");
        Shape eightB = SyntheticCheckpoint.preset("llama-3-8b").with(null, null, null, null, 4096);
        Path dir = write("ck", Settings.of(eightB, 2));
        try (Checkpoint ck = Checkpoint.open(dir, CONF)) {
            CausalLm lm = new ModelLoader(ck, ModelSpecReader.read(dir, CONF), Nd4jBackend.INSTANCE).model();
            float[] logits = lm.forward(new int[][] {{1, 50, 700, 3000, 4095, 9, 12, 400}}).toFloats();
            for (float v : logits) assertTrue(Float.isFinite(v));
        }
    }

    @Test
    void presetsHaveThePublishedParameterCounts() {
        // embeddings, head, norms and blocks at the real block counts: the models' published sizes
        Map<String, long[]> published = Map.of("llama-2-7b", new long[] {32, 6_738_415_616L},
                "llama-2-70b", new long[] {80, 68_976_648_192L}, "llama-3-8b", new long[] {32, 8_030_261_248L},
                "llama-3-70b", new long[] {80, 70_553_706_496L}, "llama-3-405b", new long[] {126, 405_853_388_800L});
        assertEquals(published.keySet(), SyntheticCheckpoint.presets().keySet());
        for (var e : published.entrySet()) {
            Shape s = SyntheticCheckpoint.preset(e.getKey());
            long params = SyntheticCheckpoint.tensors(s, (int) e.getValue()[0]).stream().mapToLong(TensorPlan::elements).sum();
            assertEquals(e.getValue()[1], params, e.getKey());
            ModelSpec spec = ModelSpecReader.parse(e.getKey(), SyntheticCheckpoint.config(Settings.of(s, 1)));
            assertEquals(128, spec.headDim(), e.getKey());
        }
    }

    @Test
    void badSettingsAreRefusedBeforeAnythingIsWritten() throws Exception {
        Shape base = SyntheticCheckpoint.preset("llama-3-8b");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> SyntheticCheckpoint.preset("llama-4"))
                .getMessage().contains("llama-2-7b, llama-2-70b, llama-3-8b, llama-3-70b, llama-3-405b"));
        assertThrows(IllegalArgumentException.class, () -> base.with(4100, null, null, null, null));
        assertThrows(IllegalArgumentException.class, () -> base.with(null, 32, 6, null, null));
        assertThrows(IllegalArgumentException.class, () -> Settings.of(SMALL, 0));
        // the tokenizer's 4096 ids need a vocabulary of 4096 or more
        Path out = new Path(tmp.resolve("small-vocab").toUri());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> SyntheticCheckpoint.write(out, CONF,
                Settings.of(SMALL.with(null, null, null, null, 1000), 1).tokenizerDir(new Path(Fixtures.model("tiny-llama").toUri())), null));
        assertTrue(e.getMessage().contains("4096 ids"), e.getMessage());
        try (var files = Files.list(tmp)) {
            assertEquals(0, files.count(), "nothing written");
        }
    }

    @Test
    void anEmptyFolderIsFilledAFullOneRefused() throws Exception {
        Files.createDirectories(tmp.resolve("empty"));
        // an existing folder's URI ends in '/': the checkpoint still goes into it, not into a folder inside
        SyntheticCheckpoint.write(new Path(tmp.resolve("empty").toUri()), CONF, small(1), null);
        assertTrue(Files.exists(tmp.resolve("empty/config.json")));
        java.nio.file.Path keep = Files.writeString(Files.createDirectories(tmp.resolve("full")).resolve("notes.txt"), "mine");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> write("full", small(1)));
        assertTrue(e.getMessage().contains("not empty"), e.getMessage());
        assertEquals("mine", Files.readString(keep));
    }

    // the synth command

    @Test
    void commandWritesACheckpointAndOneSummaryLine() throws Exception {
        String out = tmp.resolve("cli").toString();
        EvalCommandTest.Run r = EvalCommandTest.run("synth", "--shape", "llama-3-8b", "--hidden", "256", "--heads", "8",
                "--kv-heads", "4", "--intermediate", "512", "--vocab", "4096", "--blocks", "3", "--seed", "5",
                "--shard-size", "1MB", "--out", out);
        assertEquals(0, r.code(), r.err());
        String summary = r.out().trim();
        assertFalse(summary.contains("\n"), summary);
        assertTrue(summary.contains("3 blocks") && summary.contains("parameters") && summary.contains("shards"), summary);
        assertTrue(r.err().contains("model.layers.2.mlp.down_proj.weight") && r.err().contains("MB/s"), r.err());
        ModelSpec spec = ModelSpecReader.read(new Path(out), CONF);
        assertEquals(3, spec.numLayers());
        JsonNode config = new ObjectMapper().readTree(tmp.resolve("cli/config.json").toFile());
        assertEquals(5, config.get("blockquant_synthetic").get("seed").asLong());
    }

    @Test
    void commandHelpListsTheFlags() {
        EvalCommandTest.Run r = EvalCommandTest.run("synth", "--help");
        assertEquals(0, r.code());
        for (String flag : List.of("--shape", "--blocks", "--out", "--seed", "--hidden", "--heads", "--kv-heads",
                "--intermediate", "--vocab", "--shard-size", "--tokenizer", "llama-3-405b")) {
            assertTrue(r.out().contains(flag), flag + " missing from\n" + r.out());
        }
    }

    @Test
    void commandGivesOneClearLineForBadInput() throws Exception {
        Files.writeString(Files.createDirectories(tmp.resolve("taken")).resolve("x"), "x");
        List<String[]> cases = new ArrayList<>();
        cases.add(new String[] {"unknown shape 'llama-9b' (known: llama-2-7b, llama-2-70b, llama-3-8b, llama-3-70b, llama-3-405b)",
                "--shape", "llama-9b"});
        cases.add(new String[] {"hidden size 4100 is not divisible by 32 attention heads", "--hidden", "4100"});
        cases.add(new String[] {"32 attention heads are not divisible by 6 key/value heads", "--kv-heads", "6"});
        cases.add(new String[] {"exists and is not empty", "--out", tmp.resolve("taken").toString()});
        cases.add(new String[] {"--shard-size '5 parsecs'", "--shard-size", "5 parsecs"});
        cases.add(new String[] {"--blocks must be at least 1", "--blocks", "0"});
        cases.add(new String[] {"smaller than the tokenizer's 4096 ids", "--vocab", "100"});
        for (String[] c : cases) {
            List<String> args = new ArrayList<>(List.of("synth"));
            args.addAll(List.of(c).subList(1, c.length));
            if (!args.contains("--out")) args.addAll(List.of("--out", tmp.resolve("never").toString()));
            EvalCommandTest.Run r = EvalCommandTest.run(args.toArray(String[]::new));
            assertEquals(2, r.code(), String.join(" ", args) + "\n" + r.err());
            String err = r.err().trim();
            assertTrue(err.startsWith("blockquant synth: error: ") && err.contains(c[0]), err);
            assertFalse(err.contains("\n"), "one line, no stack trace:\n" + err);
        }
        assertFalse(Files.exists(tmp.resolve("never")));
        assertEquals("x", Files.readString(tmp.resolve("taken/x")));
    }

    @Test
    void shardSizesCountAsHuggingFaceDoes() {
        assertEquals(5_000_000_000L, SynthCommand.parseSize("5GB"));
        assertEquals(500_000_000L, SynthCommand.parseSize("500mb"));
        assertEquals(1_500_000_000L, SynthCommand.parseSize("1.5GB"));
        assertEquals(2L << 30, SynthCommand.parseSize("2GiB"));
        assertEquals(123L, SynthCommand.parseSize("123"));
        assertThrows(IllegalArgumentException.class, () -> SynthCommand.parseSize("0GB"));
        assertThrows(IllegalArgumentException.class, () -> SynthCommand.parseSize("-1"));
    }
}
