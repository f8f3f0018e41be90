package io.blockquant.cli;

import io.blockquant.eval.CheckpointSource;
import io.blockquant.eval.ModelSource;
import io.blockquant.eval.NllSum;
import io.blockquant.eval.PerplexityJob;
import io.blockquant.eval.StoreSource;
import io.blockquant.eval.TokenWindows;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TextTokenizer;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.quant.FakeQuantRecipe;
import io.blockquant.quant.FpFormat;
import io.blockquant.schedule.QuantizeSettings;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.spark.SparkSessions;
import io.blockquant.eval.EvalRecord;
import io.blockquant.store.StoreReader;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.SparkSession;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code eval}: perplexity of a model, full precision or fake-quantized, under the reference protocol. */
@Command(name = "eval", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Perplexity of a Hugging Face model on a text file, spread over Spark tasks.",
            "Protocol: the whole text tokenized as one string (no special tokens), consecutive windows of",
            "--seqlen tokens (remainder dropped, at most --max-windows), tokens 1..seqlen-1 of each window",
            "predicted from the tokens before them; float32 throughout.",
            "Runs block by block (one Spark job per block, activations kept in --work), so no JVM holds more",
            "than one block of the model.",
            "With --store the result (text, protocol, windows, perplexity, time) is recorded in the store as eval.json",
            "(replaced atomically), which report shows."})
public final class EvalCommand implements Callable<Integer> {

    @Option(names = "--model", paramLabel = "DIR", description = "model folder (config.json, safetensors, tokenizer.json); file:, hdfs:, s3a: (default: ${DEFAULT-VALUE})")
    String model = Defaults.model();

    @Option(names = "--store", paramLabel = "STORE", description = "evaluate the quantized model in this model store (written by quantize) instead of --model")
    String store;

    @Option(names = "--text", paramLabel = "FILE", description = "text to evaluate on (default: ${DEFAULT-VALUE})")
    String text = Defaults.evalText();

    @Option(names = "--seqlen", description = "tokens per window (default: ${DEFAULT-VALUE})")
    int seqlen = 512;

    @Option(names = "--max-windows", paramLabel = "N", description = "score at most N windows (default: ${DEFAULT-VALUE})")
    int maxWindows = 128;

    @Option(names = "--method", description = "fp (full precision) or rtn (round to nearest) (default: fp, or rtn when --wbits/--abits is given)")
    String method;

    @Option(names = "--wbits", paramLabel = "N", description = "weight bits for rtn, 2..8 (default: 16 = not quantized)")
    int wbits = 16;

    @Option(names = "--group", paramLabel = "G", description = "quantization group of G input columns; 0 = per output channel (default: ${DEFAULT-VALUE})")
    int group = 0;

    @Option(names = "--sym", description = "symmetric weight quantization (default: asymmetric min-max)")
    boolean symmetric;

    @Option(names = "--abits", paramLabel = "N", description = "per-token activation bits on the input of every block linear; 16 = off (default: ${DEFAULT-VALUE})")
    int abits = 16;

    @picocli.CommandLine.Mixin
    AttentionQuantOptions attention = new AttentionQuantOptions();

    @Option(names = "--windows-per-task", paramLabel = "N", description = "windows batched into one Spark task (default: ${DEFAULT-VALUE})")
    int windowsPerTask = 4;

    @Option(names = "--work", paramLabel = "DIR", description = "folder (any Hadoop path every executor reaches) under which the run keeps "
            + "its block activations, in a fresh eval-<id> folder removed at the end (default: STORE/_work with --store; "
            + "else spark.local.dir in local mode, hadoop.tmp.dir on a cluster)")
    String work;

    @Option(names = "--backend", paramLabel = "cpu|cuda|auto", description = "where tasks compute: cpu (ND4J), cuda (the task's GPU; "
            + "stops when CUDA cannot load), auto: the GPU Spark gave a task, or in local mode GPU 0 when CUDA loads, else cpu "
            + "(default: spark.blockquant.backend, else auto)")
    String backend;

    @Option(names = "--master", description = "Spark master URL (default: the spark-submit one, else local[*])")
    String master;

    @Option(names = "--json", description = "print one JSON object as the last line (ppl, windows, tokens, ...)")
    boolean json;

    @Override
    public Integer call() throws IOException {
        FakeQuantRecipe recipe = recipe();
        long start = System.nanoTime();
        Configuration conf = new Configuration();
        // executors resolve relative paths against their own working folders
        model = UserPaths.absolute(model, conf);
        store = UserPaths.absolute(store, conf);
        work = UserPaths.absolute(work, conf);
        SparkSession spark = null;
        ModelSource source = new CheckpointSource(model);
        if (store != null) {
            if (!recipe.isFullPrecision()) throw new IllegalArgumentException("--store evaluates the stored model as it is; drop --method/--wbits/--abits/--kv-bits");
            spark = SparkSessions.getOrCreate("blockquant eval", master, backend);
            StoredEval stored = StoredEval.open(spark, store);
            source = stored.source();
            recipe = stored.recipe();
        }
        Path modelDir = new Path(source.modelDir());
        ModelSpec spec = ModelSpecReader.read(modelDir, conf);
        int[] tokens;
        try (TextTokenizer tokenizer = TextTokenizer.load(modelDir, conf)) {
            tokens = tokenizer.encode(readText(new Path(text), conf));
        }
        List<int[]> windows = TokenWindows.split(tokens, seqlen, maxWindows);
        if (windows.isEmpty()) {
            throw new IllegalArgumentException(text + ": " + tokens.length + " tokens, fewer than one window of "
                    + seqlen + " (--seqlen)");
        }
        // a store's weights are its own; the recipe adds only what eval quantizes at run time, its activations
        String method = store != null ? "store " + recipe.activationLabel() : recipe.label();
        System.err.printf("eval: %s%n      %s, %d tokens -> %d windows of %d, %s%n", spec.describe(), text,
                tokens.length, windows.size(), seqlen, store != null ? "the store's weights, activations " + recipe.activationLabel() : method);

        if (spark == null) spark = SparkSessions.getOrCreate("blockquant eval", master, backend);
        NllSum result = PerplexityJob.run(spark, new PerplexityJob.Request(source, recipe, windowsPerTask, work), windows,
                "eval " + new Path(text).getName(), System.err);
        double seconds = (System.nanoTime() - start) / 1e9;

        System.out.printf(Locale.ROOT, "%-12s %-24s %-24s %8s %8s %10s%n", "model", "text", "method", "windows", "tokens", "perplexity");
        System.out.printf(Locale.ROOT, "%-12s %-24s %-24s %8d %8d %10.4f%n", store != null ? new Path(store).getName() : modelDir.getName(),
                new Path(text).getName(), method, result.windows(), tokens.length, result.perplexity());
        System.out.printf(Locale.ROOT, "done in %.1f s on %s%n", seconds, spark.sparkContext().master());
        if (store != null) {
            new EvalRecord(result.perplexity(), text, seqlen, result.windows(), tokens.length, result.tokens(), result.nll() / result.tokens(),
                    seconds, "eval --store").writeTo(store, spark.sparkContext().hadoopConfiguration());
            System.err.println("eval: perplexity recorded in " + new Path(store, EvalRecord.FILE));
        }
        if (json) {
            System.out.printf(Locale.ROOT,
                    "{\"ppl\": %.6f, \"windows\": %d, \"tokens\": %d, \"scored_tokens\": %d, \"nll_mean\": %.8f, "
                            + "\"method\": \"%s\", \"model\": \"%s\", \"text\": \"%s\", \"seqlen\": %d, \"seconds\": %.2f}%n",
                    result.perplexity(), result.windows(), tokens.length, result.tokens(), result.nll() / result.tokens(),
                    store != null ? "store" : recipe.label(), jsonEscape(store != null ? store : model), jsonEscape(text), seqlen, seconds);
        }
        return 0;
    }

    FakeQuantRecipe recipe() {
        boolean kv = attention.kvCacheAsked();
        String m = method != null ? method : (wbits < 16 || abits < 16 || kv ? "rtn" : "fp");
        switch (m) {
            case "fp":
                if (wbits < 16 || abits < 16 || kv) throw new IllegalArgumentException("--method fp takes no --wbits/--abits/--kv-bits; use --method rtn");
                return FakeQuantRecipe.NONE;
            case "rtn":
                if (wbits >= 16 && abits >= 16 && !kv) throw new IllegalArgumentException("--method rtn needs --wbits (2..8), --abits and/or --kv-bits");
                IntQuantSpec w = wbits < 16 ? new IntQuantSpec(wbits, group, symmetric) : null;
                return new FakeQuantRecipe(w, activations());
            default:
                throw new IllegalArgumentException("--method '" + m + "' is not known to eval (expected fp or rtn)");
        }
    }

    /**
     * eval's {@code --abits}, {@code --asym-acts}, {@code --quant-attn}, {@code --kv-bits}, {@code --kv-format} as
     * {@code quantize} reads them: through {@link QuantizeSettings#parse}, the one settings parser.
     */
    ActivationQuant activations() {
        Map<String, String> keys = new java.util.LinkedHashMap<>();
        keys.put("method", "rtn");
        keys.put("abits", String.valueOf(abits));
        attention.putGiven(keys);
        return QuantizeSettings.parse(keys, null).activations();
    }

    /**
     * How the stored recipe quantizes activations at inference: linear inputs (INT bits, symmetric or not, FP8
     * format, or none) and attention's Q, K, V or KV cache. A store from before quantized attention has no
     * {@code asym_acts}, {@code quant_attn}, {@code kv_bits}: symmetric linear inputs only, as it was made.
     */
    static FakeQuantRecipe storedActivations(StoreReader reader) {
        try {
            return activationsOf(new com.fasterxml.jackson.databind.ObjectMapper().readTree(reader.readJson("recipe.json")));
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new io.blockquant.model.ModelFormatException(reader.root() + "/recipe.json: not valid JSON (" + e.getOriginalMessage() + ")", e);
        }
    }

    /** The activation quantization recipe.json records ({@link QuantizeSettings#toJson}'s keys). */
    static FakeQuantRecipe activationsOf(com.fasterxml.jackson.databind.JsonNode recipe) {
        int bits = recipe.path("abits").asInt(0);
        FpFormat af = switch (recipe.path("aformat").asText("int")) {
            case "e4m3" -> FpFormat.E4M3;
            case "e5m2" -> FpFormat.E5M2;
            default -> null;
        };
        FpFormat kvf = "fp8".equals(recipe.path("kv_format").asText("int")) ? FpFormat.E4M3 : null;
        return new FakeQuantRecipe(null, ActivationQuant.of(bits == 0 ? 16 : bits, af, recipe.path("asym_acts").asBoolean(false),
                recipe.path("quant_attn").asBoolean(false), recipe.path("kv_bits").asInt(0), kvf));
    }

    /**
     * Perplexity of a store's model under the reference protocol (what {@code quantize} reports at its end), recorded
     * in the store's {@code eval.json}.
     */
    static EvalRecord storePerplexity(SparkSession spark, String storePath, String textFile, int seqlen, int maxWindows,
                                      int windowsPerTask) throws IOException {
        long start = System.nanoTime();
        Configuration conf = spark.sparkContext().hadoopConfiguration();
        StoredEval stored = StoredEval.open(spark, storePath);
        int[] tokens;
        try (TextTokenizer tokenizer = TextTokenizer.load(new Path(stored.source().modelDir()), conf)) {
            tokens = tokenizer.encode(readText(new Path(textFile), conf));
        }
        List<int[]> windows = TokenWindows.split(tokens, seqlen, maxWindows);
        if (windows.isEmpty()) throw new IllegalArgumentException(textFile + ": fewer than one window of " + seqlen + " tokens");
        NllSum r = PerplexityJob.run(spark, new PerplexityJob.Request(stored.source(), stored.recipe(), windowsPerTask, null),
                windows, "eval " + new Path(textFile).getName(), System.err);
        EvalRecord record = new EvalRecord(r.perplexity(), textFile, seqlen, r.windows(), tokens.length, r.tokens(), r.nll() / r.tokens(),
                (System.nanoTime() - start) / 1e9, "quantize");
        record.writeTo(storePath, conf);
        return record;
    }

    /**
     * A finished store ready to score (manifest and format checked on the driver): where executors read its
     * blocks, and the activation quantization its recipe applies at inference.
     */
    record StoredEval(StoreSource source, FakeQuantRecipe recipe) {
        static StoredEval open(SparkSession spark, String storePath) {
            StoreReader reader = StoreReader.open(spark, storePath);
            return new StoredEval(StoreSource.of(reader, spark.sparkContext().hadoopConfiguration()), storedActivations(reader));
        }
    }

    static String readText(Path file, Configuration conf) throws IOException {
        FileSystem fs = file.getFileSystem(conf);
        if (!fs.exists(file)) throw new java.io.FileNotFoundException(file + ": text file not found");
        try (InputStream in = fs.open(file)) {
            String s = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            if (s.isBlank()) throw new IllegalArgumentException(file + ": the text is empty");
            return s;
        }
    }

    private static String jsonEscape(String s) {
        return s.replace("\\", "\\\\").replace("\"", "\\\"");
    }
}
