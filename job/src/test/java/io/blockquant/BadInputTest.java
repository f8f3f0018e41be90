package io.blockquant;

import io.blockquant.cli.EvalCommandTest;
import io.blockquant.cli.EvalCommandTest.Run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.model.ModelFormatException;
import io.blockquant.spark.SparkSessions;
import io.blockquant.store.StoreLayout;
import io.blockquant.store.StoreReader;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.functions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Bad input and faults, through the commands a user runs ({@code quantize}, {@code eval}) or the public store
 * reader: every case must end in exit code 2 and one error line that names the file, key or tensor and what
 * was expected (no stack trace), and must leave no store a reader could take for a model. The model is a
 * 2-block Llama written by the test ({@link TinyCheckpoint}); one case changes one thing.
 */
@DisplayName("Bad input and faults")
class BadInputTest {

    static SparkSession spark;

    @TempDir
    static Path shared;

    static Path calib;

    @BeforeAll
    static void start() throws IOException {
        spark = SparkSessions.getOrCreate("bad-input-test", "local[2]");
        spark.sparkContext().hadoopConfiguration().set("fs." + FullDiskFileSystem.SCHEME + ".impl",
                FullDiskFileSystem.class.getName());
        calib = Fixtures.shortCalibrationText(shared); // enough for 4 windows of 16
    }

    @AfterAll
    static void stop() {
        if (spark != null) spark.stop();
    }

    @TempDir
    Path tmp;

    // ---- running the command line ---------------------------------------------------------------

    static Run cli(String... args) {
        return EvalCommandTest.run(args);
    }

    /** quantize of {@code model} into {@code out} with a tiny RTN calibration; {@code more} adds or replaces flags. */
    static String[] quantize(Path model, Path out, String... more) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--calib", calib.toString(),
                "--nsamples", "4", "--seqlen", "16", "--windows-per-task", "2", "--no-eval", "--master", "local[2]"));
        List<String> extra = List.of(more);
        if (!extra.contains("--out")) args.addAll(List.of("--out", out.toString()));
        if (!extra.contains("--method") && !extra.contains("--recipe")) args.addAll(List.of("--method", "rtn"));
        if (!extra.contains("--wbits") && !extra.contains("--recipe")) args.addAll(List.of("--wbits", "4"));
        for (int i = 0; i < extra.size(); i++) {
            int at = args.indexOf(extra.get(i));
            if (extra.get(i).startsWith("--") && at >= 0 && i + 1 < extra.size() && !extra.get(i + 1).startsWith("--")) {
                args.set(at + 1, extra.get(++i)); // replaces a default flag's value
            } else {
                args.add(extra.get(i));
            }
        }
        return args.toArray(new String[0]);
    }

    /**
     * Exit code 2 and exactly one error line, {@code blockquant <command>: error: ...}, holding every part;
     * nothing that looks like a stack trace anywhere on stderr.
     */
    static String assertOneError(Run r, String command, String... parts) {
        assertEquals(2, r.code(), () -> "exit code; stdout:\n" + r.out() + "\nstderr:\n" + r.err());
        List<String> errors = r.err().lines().filter(l -> l.contains(": error: ")).toList();
        assertEquals(1, errors.size(), () -> "one error line expected:\n" + r.err());
        String line = errors.get(0);
        assertTrue(line.startsWith("blockquant " + command + ": error: "), line);
        for (String part : parts) {
            assertTrue(line.contains(part), () -> "the error should mention '" + part + "':\n" + line);
        }
        assertFalse(r.err().lines().anyMatch(l -> l.startsWith("\tat ") || l.startsWith("Caused by:")),
                () -> "a stack trace on stderr:\n" + r.err());
        return line;
    }

    /** The store path does not exist: nothing was written, or what was written was removed. */
    static void assertNoStore(Path out) {
        assertFalse(Files.exists(out), () -> out + " should not exist; it holds " + listing(out));
    }

    static List<String> listing(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.map(p -> dir.relativize(p).toString()).sorted().toList();
        } catch (IOException e) {
            return List.of("(cannot list: " + e.getMessage() + ")");
        }
    }

    /** Every file under {@code dir} with its bytes' hash: what a refused run must leave as it was. */
    static Map<String, Integer> snapshot(Path dir) throws IOException {
        Map<String, Integer> out = new TreeMap<>();
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                if (Files.isRegularFile(p)) out.put(dir.relativize(p).toString(), Arrays.hashCode(Files.readAllBytes(p)));
            }
        }
        return out;
    }

    Path model(TinyCheckpoint c, int shards) throws IOException {
        return c.write(Files.createTempDirectory(tmp, "model"), shards);
    }

    Path out() {
        return tmp.resolve("store");
    }

    /** Replaces the folder's single model.safetensors with these bytes. */
    Path withSafetensors(byte[] bytes) throws IOException {
        Path m = model(TinyCheckpoint.llama(2, 1), 1);
        Files.write(m.resolve("model.safetensors"), bytes);
        return m;
    }

    static final ObjectMapper JSON = new ObjectMapper();

    /** A finished store of a 2-block model, quantized once for the cases that need one. */
    static Path finishedStore;

    static synchronized Path finishedStore() throws IOException {
        if (finishedStore == null) {
            Path m = TinyCheckpoint.llama(2, 7).write(shared.resolve("store-model"), 1);
            Path out = shared.resolve("finished-store");
            Run r = cli(quantize(m, out));
            assertEquals(0, r.code(), r.err());
            finishedStore = out;
        }
        return finishedStore;
    }

    /** A copy of the finished store that a case may break. */
    Path storeCopy() throws IOException {
        Path src = finishedStore(), dst = tmp.resolve("copy");
        try (Stream<Path> s = Files.walk(src)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                Path t = dst.resolve(src.relativize(p).toString());
                if (Files.isDirectory(p)) Files.createDirectories(t);
                else Files.copy(p, t);
            }
        }
        return dst;
    }

    // ---- safetensors -----------------------------------------------------------------------------

    @Nested
    @DisplayName("safetensors")
    class Safetensors {

        @Test
        @DisplayName("a shard cut short: names the shard and says it is truncated")
        void truncatedShard() throws IOException {
            Path m = model(TinyCheckpoint.llama(2, 1), 2);
            Path shard = m.resolve("model-00002-of-00002.safetensors");
            byte[] bytes = Files.readAllBytes(shard);
            Files.write(shard, Arrays.copyOf(bytes, bytes.length / 2));
            assertOneError(cli(quantize(m, out())), "quantize", "model-00002-of-00002.safetensors",
                    "end past the data section", "truncated");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a file shorter than the 8-byte header length")
        void shorterThanHeaderLength() throws IOException {
            Path m = withSafetensors(new byte[] {1, 2, 3, 4, 5});
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors",
                    "truncated safetensors file (5 bytes, shorter than the 8-byte header length)");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a header length beyond the end of the file")
        void headerLengthBeyondFile() throws IOException {
            byte[] bytes = TinyCheckpoint.raw("{}", new byte[0]);
            bytes[0] = 0x40; bytes[1] = 0x42; bytes[2] = 0x0f; // 1,000,000 little-endian
            Path m = withSafetensors(bytes);
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors",
                    "header length 1000000 runs past the end of the file (10 bytes)");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a header that is not JSON")
        void headerNotJson() throws IOException {
            Path m = withSafetensors(TinyCheckpoint.raw("{\"w\": {\"dtype\": F32", new byte[8]));
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors", "header is not valid JSON");
            assertNoStore(out());
        }

        @Test
        @DisplayName("two tensors whose data_offsets overlap")
        void overlappingOffsets() throws IOException {
            String header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
            Path m = withSafetensors(TinyCheckpoint.raw(header, new byte[12]));
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors",
                    "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
            assertNoStore(out());
        }

        @Test
        @DisplayName("data_offsets outside the data section")
        void offsetsOutsideData() throws IOException {
            String header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
            Path m = withSafetensors(TinyCheckpoint.raw(header, new byte[12]));
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors", "tensor 'a'",
                    "data_offsets [8,16] end past the data section (12 bytes)");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a dtype and shape the bytes do not fit")
        void dtypeBytesMismatch() throws IOException {
            String header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8]}}";
            Path m = withSafetensors(TinyCheckpoint.raw(header, new byte[8]));
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors", "tensor 'w'",
                    "dtype F32 with shape [4] needs 16 bytes but data_offsets [0,8] span 8");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a tensor named twice in one header")
        void duplicateNames() throws IOException {
            String header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    + "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
            Path m = withSafetensors(TinyCheckpoint.raw(header, new byte[8]));
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors", "header names a tensor twice",
                    "'w'");
            assertNoStore(out());
        }

        @Test
        @DisplayName("index.json naming a shard that is missing")
        void indexNamesMissingShard() throws IOException {
            Path m = model(TinyCheckpoint.llama(2, 1), 2);
            Files.delete(m.resolve("model-00002-of-00002.safetensors"));
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors.index.json",
                    "names shard 'model-00002-of-00002.safetensors'", "which is missing from");
            assertNoStore(out());
        }

        @Test
        @DisplayName("index.json naming a shard outside the model folder (..)")
        void indexShardOutsideFolder() throws IOException {
            Path m = model(TinyCheckpoint.llama(2, 1), 2);
            rewriteShardName(m, "../model-00001-of-00002.safetensors");
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors.index.json",
                    "shard name '../model-00001-of-00002.safetensors'", "contains '..'", "inside the model folder");
            assertNoStore(out());
        }

        @Test
        @DisplayName("index.json naming a shard on another file system (scheme:)")
        void indexShardOtherFileSystem() throws IOException {
            Path m = model(TinyCheckpoint.llama(2, 1), 2);
            rewriteShardName(m, "file:model-00001-of-00002.safetensors");
            assertOneError(cli(quantize(m, out())), "quantize", "model.safetensors.index.json",
                    "shard name 'file:model-00001-of-00002.safetensors'", "contains ':'");
            assertNoStore(out());
        }

        private void rewriteShardName(Path m, String shard) throws IOException {
            Path index = m.resolve("model.safetensors.index.json");
            ObjectNode root = (ObjectNode) JSON.readTree(index.toFile());
            ((ObjectNode) root.get("weight_map")).put("model.embed_tokens.weight", shard);
            JSON.writeValue(index.toFile(), root);
        }

        @Test
        @DisplayName("a tensor whose shape config.json does not predict, in the last block")
        void wrongShapeInLastBlock() throws IOException {
            TinyCheckpoint c = TinyCheckpoint.llama(2, 1);
            String name = "model.layers.1.self_attn.k_proj.weight";
            c.tensors.replaceAll(t -> t.name().equals(name)
                    ? new TinyCheckpoint.Tensor(name, "F32", new long[] {16, 64}, new byte[16 * 64 * 4]) : t);
            assertOneError(cli(quantize(model(c, 1), out())), "quantize", "block 1", "tensor '" + name + "'",
                    "has shape [16, 64], expected [32, 64] from config.json");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a tensor missing from the checkpoint")
        void missingTensor() throws IOException {
            TinyCheckpoint c = TinyCheckpoint.llama(2, 1);
            c.tensors.removeIf(t -> t.name().equals("model.layers.1.mlp.down_proj.weight"));
            assertOneError(cli(quantize(model(c, 1), out())), "quantize", "block 1",
                    "tensor 'model.layers.1.mlp.down_proj.weight' is missing from the checkpoint");
            assertNoStore(out());
        }
    }

    // ---- config.json -----------------------------------------------------------------------------

    @Nested
    @DisplayName("config.json")
    class Config {

        Run quantizeWith(String key, Object value) throws IOException {
            TinyCheckpoint c = TinyCheckpoint.llama(2, 1);
            if (value == null) c.config.remove(key);
            else c.config.put(key, value);
            return cli(quantize(model(c, 1), out()));
        }

        @Test
        @DisplayName("a missing key")
        void missingKey() throws IOException {
            assertOneError(quantizeWith("intermediate_size", null), "quantize", "config.json",
                    "missing key 'intermediate_size'");
            assertNoStore(out());
        }

        @Test
        @DisplayName("an unknown architecture")
        void unknownArchitecture() throws IOException {
            assertOneError(quantizeWith("model_type", "gpt2"), "quantize", "config.json",
                    "unsupported architecture (model_type 'gpt2'", "supported: llama, mistral, qwen2, opt, falcon");
            assertNoStore(out());
        }

        @Test
        @DisplayName("attention heads that do not divide the hidden size")
        void headsDoNotDivideHidden() throws IOException {
            assertOneError(quantizeWith("num_attention_heads", 5), "quantize", "config.json",
                    "num_attention_heads = 5 does not divide hidden_size = 64");
            assertNoStore(out());
        }

        @Test
        @DisplayName("key/value heads that do not divide the attention heads")
        void kvHeadsDoNotDivideHeads() throws IOException {
            assertOneError(quantizeWith("num_key_value_heads", 3), "quantize", "config.json",
                    "num_key_value_heads = 3 does not divide num_attention_heads = 4");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a value of the wrong type")
        void wrongType() throws IOException {
            assertOneError(quantizeWith("hidden_size", "sixty-four"), "quantize", "config.json",
                    "key 'hidden_size' is \"sixty-four\", expected a positive integer");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a config.json that is not JSON")
        void notJson() throws IOException {
            Path m = model(TinyCheckpoint.llama(2, 1), 1);
            Files.writeString(m.resolve("config.json"), "{\"model_type\": \"llama\",");
            assertOneError(cli(quantize(m, out())), "quantize", "config.json", "not valid JSON");
            assertNoStore(out());
        }

        @Test
        @DisplayName("no config.json")
        void absent() throws IOException {
            Path m = model(TinyCheckpoint.llama(2, 1), 1);
            Files.delete(m.resolve("config.json"));
            assertOneError(cli(quantize(m, out())), "quantize", "config.json: not found");
            assertNoStore(out());
        }
    }

    // ---- non-finite weights ----------------------------------------------------------------------

    @Nested
    @DisplayName("weights with NaN or Inf")
    class NonFinite {

        @Test
        @DisplayName("a NaN in the last block: refused before any block is quantized, naming block and tensor")
        void nanInLastBlock() throws IOException {
            TinyCheckpoint c = TinyCheckpoint.llama(2, 1).poke("model.layers.1.mlp.down_proj.weight", 7, Float.NaN);
            assertOneError(cli(quantize(model(c, 1), out())), "quantize", "block 1:", "model.safetensors",
                    "tensor 'model.layers.1.mlp.down_proj.weight' holds 1 NaN/Inf values (first at flat index 7)");
            assertNoStore(out());
        }

        @Test
        @DisplayName("an Inf in the embeddings")
        void infInEmbeddings() throws IOException {
            TinyCheckpoint c = TinyCheckpoint.llama(2, 1).poke("model.embed_tokens.weight", 100, Float.NEGATIVE_INFINITY);
            assertOneError(cli(quantize(model(c, 1), out())), "quantize", "embeddings/head:",
                    "tensor 'model.embed_tokens.weight' holds 1 NaN/Inf values (first at flat index 100)");
            assertNoStore(out());
        }

        @Test
        @DisplayName("eval of a model with a NaN: one line from inside the Spark task")
        void nanInEval() throws IOException {
            TinyCheckpoint c = TinyCheckpoint.llama(2, 1).poke("model.layers.0.self_attn.q_proj.weight", 3, Float.NaN);
            Run r = cli("eval", "--model", model(c, 1).toString(), "--text", calib.toString(), "--seqlen", "16",
                    "--max-windows", "2", "--master", "local[2]");
            assertOneError(r, "eval", "tensor 'model.layers.0.self_attn.q_proj.weight' holds 1 NaN/Inf values");
        }
    }

    // ---- calibration text ------------------------------------------------------------------------

    @Nested
    @DisplayName("calibration text")
    class Calibration {

        Run quantizeOn(String text, String... more) throws IOException {
            Path file = Files.writeString(tmp.resolve("calib-case.txt"), text);
            List<String> args = new ArrayList<>(List.of("--calib", file.toString()));
            args.addAll(List.of(more));
            return cli(quantize(model(TinyCheckpoint.llama(2, 1), 1), out(), args.toArray(new String[0])));
        }

        @Test
        @DisplayName("an empty text")
        void empty() throws IOException {
            assertOneError(quantizeOn("  \n\n "), "quantize", "calib-case.txt: the text is empty");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a text shorter than one window")
        void shorterThanWindow() throws IOException {
            assertOneError(quantizeOn("In the beginning."), "quantize", "calibration text", "calib-case.txt",
                    "fewer than one window of 16 (+1)");
            assertNoStore(out());
        }

        @Test
        @DisplayName("more windows than the text holds: refused, not repeated")
        void nsamplesBeyondText() throws IOException {
            String text = Files.readString(calib).substring(0, 2_000);
            assertOneError(quantizeOn(text, "--nsamples", "128"), "quantize", "calib-case.txt", "128 windows of 16 need 2048",
                    "windows would repeat the text", "lower --nsamples or --seqlen, or add text");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a calibration file that does not exist")
        void absent() throws IOException {
            Run r = cli(quantize(model(TinyCheckpoint.llama(2, 1), 1), out(), "--calib", tmp.resolve("nope.txt").toString()));
            assertOneError(r, "quantize", "nope.txt: text file not found");
            assertNoStore(out());
        }
    }

    // ---- recipes and flags -----------------------------------------------------------------------

    @Nested
    @DisplayName("recipes and flags")
    class Recipes {

        Run quantizeWith(String... more) throws IOException {
            return cli(quantize(model(TinyCheckpoint.llama(2, 1), 1), out(), more));
        }

        Run quantizeWithRecipe(String text) throws IOException {
            Path recipe = Files.writeString(tmp.resolve("case.conf"), text);
            return quantizeWith("--recipe", recipe.toString());
        }

        @Test
        @DisplayName("a recipe with an unknown key")
        void unknownKey() throws IOException {
            assertOneError(quantizeWithRecipe("method = rtn\nwbit = 4\n"), "quantize", "case.conf",
                    "unknown recipe key 'wbit'", "known keys:");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a recipe value that is not a number")
        void notANumber() throws IOException {
            assertOneError(quantizeWithRecipe("method = rtn\nwbits = four\n"), "quantize", "case.conf",
                    "key 'wbits' = 'four' is not a valid int");
            assertNoStore(out());
        }

        @Test
        @DisplayName("bits out of range in a recipe: names the file and key")
        void bitsOutOfRangeInRecipe() throws IOException {
            assertOneError(quantizeWithRecipe("method = rtn\nwbits = 1\n"), "quantize", "case.conf: key 'wbits' = '1'",
                    "--wbits must be 2..8, got 1");
            assertNoStore(out());
        }

        @Test
        @DisplayName("bits out of range on the command line")
        void bitsOutOfRange() throws IOException {
            assertOneError(quantizeWith("--wbits", "9"), "quantize", "--wbits must be 2..8, got 9");
            assertOneError(quantizeWith("--abits", "12"), "quantize", "--abits must be 2..8 or 16 (off), got 12");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a group size that does not divide a layer's input width")
        void groupNotDividing() throws IOException {
            assertOneError(quantizeWith("--group", "48"), "quantize",
                    "--group 48 does not divide the input width 64", "choose a divisor of 64");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a group size from a recipe that does not divide: names the file and key")
        void groupNotDividingInRecipe() throws IOException {
            assertOneError(quantizeWithRecipe("method = rtn\nwbits = 4\ngroup = 48\n"), "quantize",
                    "case.conf: key 'group' = '48'", "--group 48 does not divide the input width 64");
            assertNoStore(out());
        }

        @Test
        @DisplayName("FP4 weights at 3 bits")
        void fp4AtThreeBits() throws IOException {
            assertOneError(quantizeWith("--wformat", "fp4", "--wbits", "3"), "quantize",
                    "--wformat fp4 is 4 bits wide; got --wbits 3");
            assertNoStore(out());
        }

        @Test
        @DisplayName("FP8 activations at 4 bits")
        void fp8ActivationsAtFourBits() throws IOException {
            assertOneError(quantizeWith("--aformat", "fp8e4m3", "--abits", "4"), "quantize",
                    "--aformat fp8e4m3 needs --abits 8, got 4");
            assertNoStore(out());
        }

        @Test
        @DisplayName("LET outside OmniQuant")
        void letOutsideOmniQuant() throws IOException {
            assertOneError(quantizeWith("--method", "gptq", "--let", "true"), "quantize",
                    "--let", "are OmniQuant options; use --method omniquant");
            assertNoStore(out());
        }

        @Test
        @DisplayName("a key two methods share, given to a third")
        void sharedKeyOutsideItsMethods() throws IOException {
            assertOneError(quantizeWith("--method", "gptq", "--alpha", "0.75"), "quantize",
                    "--alpha is an option of omniquant and smoothquant, not of gptq");
            assertNoStore(out());
        }

        @Test
        @DisplayName("OmniQuant with neither LWC nor LET")
        void omniQuantWithNothingToLearn() throws IOException {
            assertOneError(quantizeWith("--method", "omniquant", "--lwc", "false", "--let", "false"), "quantize",
                    "--method omniquant needs --lwc and/or --let");
            assertNoStore(out());
        }

        @Test
        @DisplayName("the up→down LET scale without LET")
        void letDownWithoutLet() throws IOException {
            assertOneError(quantizeWith("--method", "omniquant", "--abits", "4", "--let", "false", "--let-down"), "quantize",
                    "--let-down is a LET scale: it needs --let");
            assertNoStore(out());
        }

        @Test
        @DisplayName("the up→down LET scale on a model whose MLP has no gate")
        void letDownWithoutGate() throws IOException {
            assertOneError(cli(quantize(Fixtures.model("tiny-opt"), out(), "--method", "omniquant", "--abits", "4", "--let-down")),
                    "quantize", "--let-down: OPT's MLP has no gate");
            assertNoStore(out());
        }

        @Test
        @DisplayName("LoRC after OmniQuant")
        void lorcWithOmniQuant() throws IOException {
            assertOneError(quantizeWith("--method", "omniquant", "--lorc-rank", "8"), "quantize",
                    "--lorc-rank: LoRC follows RTN or GPTQ here, not OmniQuant");
            assertNoStore(out());
        }
    }

    // ---- model stores ----------------------------------------------------------------------------

    @Nested
    @DisplayName("model stores")
    class Stores {

        @Test
        @DisplayName("--out holding a different model: refused, the store untouched")
        void differentModel() throws IOException {
            Path store = storeCopy();
            Map<String, Integer> before = snapshot(store);
            Path other = model(TinyCheckpoint.llama(3, 1), 1);
            for (String[] args : List.of(quantize(other, store), quantize(other, store, "--resume"))) {
                assertOneError(cli(args), "quantize", store.getFileName().toString(),
                        "already holds a different model (fingerprint sha256:", "choose another --out or delete it");
            }
            assertEquals(before, snapshot(store));
            assertEquals(2, StoreReader.open(spark, store.toString()).blocks().size());
        }

        @Test
        @DisplayName("--out holding a store of another model with the same config and shard sizes (a fine-tune)")
        void sameShapeOtherWeights() throws IOException {
            Path store = storeCopy();
            Map<String, Integer> before = snapshot(store);
            Path fineTune = model(TinyCheckpoint.llama(2, 8), 1);
            assertEquals(Files.size(finishedStore().resolveSibling("store-model").resolve("model.safetensors")),
                    Files.size(fineTune.resolve("model.safetensors")));
            assertOneError(cli(quantize(fineTune, store, "--resume")), "quantize", "already holds a different model");
            assertEquals(before, snapshot(store));
        }

        @Test
        @DisplayName("--out holding other files")
        void notAStore() throws IOException {
            Path dir = Files.createDirectories(tmp.resolve("photos"));
            Files.writeString(dir.resolve("cat.jpg"), "meow");
            assertOneError(cli(quantize(model(TinyCheckpoint.llama(2, 1), 1), dir)), "quantize", "photos",
                    "exists and is not a model store", "cat.jpg");
            assertEquals(List.of("", "cat.jpg"), listing(dir));
        }

        @Test
        @DisplayName("--out naming a file")
        void outIsAFile() throws IOException {
            Path file = Files.writeString(tmp.resolve("notes.txt"), "keep me");
            assertOneError(cli(quantize(model(TinyCheckpoint.llama(2, 1), 1), file)), "quantize", "notes.txt",
                    "is a file, not a model store folder");
            assertEquals("keep me", Files.readString(file));
        }

        @Test
        @DisplayName("a store of a newer format version: eval refuses it")
        void newerFormatEval() throws IOException {
            Path store = newerVersion();
            assertOneError(cli("eval", "--store", store.toString(), "--master", "local[2]"), "eval", "_manifest.json",
                    "written in model store format_version " + (StoreLayout.FORMAT_VERSION + 1) + ", this blockquant reads format_version " + StoreLayout.FORMAT_VERSION + " and older");
        }

        @Test
        @DisplayName("a store of a newer format version: quantize --resume refuses it, untouched")
        void newerFormatResume() throws IOException {
            Path store = newerVersion();
            Map<String, Integer> before = snapshot(store);
            assertOneError(cli(quantize(finishedStore().resolveSibling("store-model"), store, "--resume")), "quantize",
                    "format_version " + (StoreLayout.FORMAT_VERSION + 1) + ", this blockquant reads format_version " + StoreLayout.FORMAT_VERSION + " and older");
            assertEquals(before, snapshot(store));
        }

        private Path newerVersion() throws IOException {
            Path store = storeCopy();
            for (String f : List.of(StoreLayout.MANIFEST, StoreLayout.STORE_INFO)) {
                ObjectNode json = (ObjectNode) JSON.readTree(store.resolve(f).toFile());
                json.put(StoreLayout.K_FORMAT_VERSION, StoreLayout.FORMAT_VERSION + 1);
                rewrite(store.resolve(f), json);
            }
            return store;
        }

        @Test
        @DisplayName("an unfinished store (no manifest): eval refuses it")
        void unfinished() throws IOException {
            Path store = storeCopy();
            Files.delete(store.resolve(StoreLayout.MANIFEST));
            assertOneError(cli("eval", "--store", store.toString(), "--master", "local[2]"), "eval",
                    "is not a finished model store (no _manifest.json)", "--resume");
        }
    }

    // ---- names read from a store ------------------------------------------------------------------

    @Nested
    @DisplayName("names read from a store never lead outside it")
    class StorePaths {

        @Test
        @DisplayName("a stored tensor named with '..'")
        void tensorNameWithDotDot() throws IOException {
            Path store = storeCopy();
            Path dir = store.resolve("tensors/block=-1");
            Path rewritten = tmp.resolve("rewritten");
            spark.read().schema(StoreLayout.TENSORS_FILE_SCHEMA).parquet(dir.toString())
                    .withColumn("module", functions.when(functions.col("module").equalTo("model.norm.weight"),
                            functions.lit("../../outside")).otherwise(functions.col("module")))
                    .coalesce(1).write().mode(SaveMode.ErrorIfExists).parquet(rewritten.toString());
            deleteTree(dir);
            Files.move(rewritten, dir);
            assertOneError(cli("eval", "--store", store.toString(), "--master", "local[2]"), "eval",
                    "tensors/block=-1", "module name '../../outside' contains '..'", "expected a plain tensor name");
        }

        @Test
        @DisplayName("a store file name with '..' or a scheme")
        void fileNameEscaping() throws IOException {
            StoreReader reader = StoreReader.open(spark, finishedStore().toString());
            for (String name : List.of("../recipe.json", "..", "file:recipe.json", "model/config.json")) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> reader.readJson(name));
                assertTrue(e.getMessage().contains("file name '" + name + "'")
                        && e.getMessage().contains("read only from inside the store"), e.getMessage());
            }
            assertTrue(reader.readJson("recipe.json").contains("\"method\""));
        }

        @Test
        @DisplayName("a manifest listing a block that is not a block number")
        void manifestBlockNotANumber() throws IOException {
            Path store = storeCopy();
            ObjectNode manifest = (ObjectNode) JSON.readTree(store.resolve(StoreLayout.MANIFEST).toFile());
            manifest.putArray(StoreLayout.K_BLOCKS).add(0).add(-2);
            rewrite(store.resolve(StoreLayout.MANIFEST), manifest);
            assertOneError(cli("eval", "--store", store.toString(), "--master", "local[2]"), "eval",
                    "_manifest.json: key blocks holds -2, expected block numbers (integers >= 0)");
        }
    }

    /** Writes JSON over a store file, dropping the local file system's checksum beside it (a test edits it on purpose). */
    static void rewrite(Path file, ObjectNode json) throws IOException {
        JSON.writeValue(file.toFile(), json);
        Files.deleteIfExists(file.resolveSibling("." + file.getFileName() + ".crc"));
    }

    static void deleteTree(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(java.util.Comparator.reverseOrder()).toList()) Files.delete(p);
        }
    }

    // ---- a disk that fills -----------------------------------------------------------------------

    @Nested
    @DisplayName("a disk that fills during the write")
    class DiskFull {

        String fullUri(Path p) {
            return FullDiskFileSystem.SCHEME + "://" + p.toAbsolutePath();
        }

        Run quantizeOnFullDisk(long freeBytes) throws IOException {
            Path m = model(TinyCheckpoint.llama(2, 1), 1);
            FullDiskFileSystem.freeBytes(freeBytes);
            try {
                return cli(quantize(m, out(), "--out", fullUri(out())));
            } finally {
                FullDiskFileSystem.freeBytes(Long.MAX_VALUE);
            }
        }

        @Test
        @DisplayName("while writing the store's first file (its lease): says which file, leaves no store")
        void whileWritingMetadata() throws IOException {
            assertOneError(quantizeOnFullDisk(64), "quantize", "cannot take the store's lease _lease.json (No space left on device)");
            assertNoStore(out());
        }

        @Test
        @DisplayName("while Spark writes the model tensors: says which block and where, leaves no store")
        void whileWritingTensors() throws IOException {
            // room for _store.json, recipe.json, config.json and tokenizer.json, not for 1 MB of embeddings
            long metadata = Files.size(Fixtures.model("tiny-llama").resolve("tokenizer.json")) + 16_384;
            String line = assertOneError(quantizeOnFullDisk(metadata), "quantize", out().getFileName().toString(),
                    "cannot write the model tensors (block -1) under", "/_tmp/", "(No space left on device)",
                    "nothing of it is committed");
            assertTrue(line.length() < 600, line);
            assertNoStore(out());
        }
    }
}
