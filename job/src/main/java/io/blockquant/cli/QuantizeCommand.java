package io.blockquant.cli;

import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TextTokenizer;
import io.blockquant.schedule.QuantizeSettings;
import io.blockquant.schedule.QuantizeJob;
import io.blockquant.schedule.TaskDevices;
import io.blockquant.spark.SparkSessions;
import java.io.IOException;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.SparkSession;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code quantize}: calibrate every block of a model and write a model store. */
@Command(name = "quantize", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Quantize a Hugging Face model block by block on Spark and write a model store.",
            "Sequential mode (default): block i is calibrated on the outputs of the already-quantized blocks 0..i-1.",
            "Parallel mode: every block at once, each on the outputs of the full-precision blocks before it.",
            "Recipe keys (in --recipe files) are the flag names without dashes; flags win over the file.",
            "After the store is committed, its perplexity on --eval-text is measured and recorded in the store as eval.json, "
                + "which report shows (--no-eval skips it)."})
public final class QuantizeCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec cmd;

    @Option(names = "--model", paramLabel = "DIR", description = "model folder (config.json, safetensors, tokenizer.json) (default: ${DEFAULT-VALUE})")
    String model = Defaults.model();

    @Option(names = "--out", paramLabel = "STORE", description = "model store to write (default: stores/<model>-<method>-<time> under the working folder)")
    String out;

    @Option(names = "--resume", description = "continue an unfinished store at --out, skipping its committed blocks")
    boolean resume;

    @Option(names = "--work-dir", paramLabel = "DIR", description = "scratch space for activations and Hessians "
            + "(default STORE/_work); a local disk (local mode) or HDFS path when the store is on S3")
    String workDir;

    @Option(names = "--recipe", paramLabel = "FILE", description = "recipe file (e.g. conf/gptq-w4a16-g64.conf)")
    String recipe;

    // The recipe's options: picocli fills them as text, QuantizeSettings.parse reads them (with a recipe file's
    // keys beneath) and holds their defaults.

    @Option(names = "--mode", description = "sequential (block i on the quantized prefix's outputs) or parallel (all blocks at once on the full-precision prefix's outputs) (default: sequential)")
    String mode;

    @Option(names = "--method", description = "rtn, gptq, omniquant or smoothquant (default: gptq)")
    String method;

    @Option(names = "--wbits", paramLabel = "N", description = "weight bits, 2..8 (default: 4)")
    String wbits;

    @Option(names = "--group", paramLabel = "G", description = "group of G input columns per scale; 0 = per output channel (default: 0)")
    String group;

    @Option(names = "--sym", arity = "0..1", fallbackValue = "true", paramLabel = "true|false", description = "symmetric weights (default: asymmetric min-max)")
    String sym;

    @Option(names = "--abits", paramLabel = "N", description = "per-token activation bits at inference, 16 = off (default: 16)")
    String abits;

    @picocli.CommandLine.Mixin
    AttentionQuantOptions attention = new AttentionQuantOptions();

    @Option(names = "--wformat", description = "weight number format: int, fp4 (E2M1, needs --wbits 4) or fp8 (E4M3, needs --wbits 8) (default: int)")
    String wformat;

    @Option(names = "--aformat", description = "activation format with --abits 8: int, fp8e4m3 or fp8e5m2 (default: int)")
    String aformat;

    @Option(names = "--scale-constraint", description = "FP weight scales: none, m1 (powers of two) or m2 (channel scale times powers of two) (default: none)")
    String scaleConstraint;

    @Option(names = "--lorc-rank", paramLabel = "R", description = "LoRC: keep a rank-R SVD of each layer's quantization error beside it; 0 = off (default: 0)")
    String lorcRank;

    @Option(names = "--lorc-format", description = "LoRC factor precision: fp32, fp16 or fp8 (default: fp16)")
    String lorcFormat;

    @Option(names = "--lorc-svd", description = "LoRC's SVD: plain (the paper: best for the weight error) or hessian "
            + "(weighted by the layer's inputs: best for its output error; needs GPTQ) (default: plain)")
    String lorcSvd;

    @Option(names = "--act-order", arity = "0..1", fallbackValue = "true", paramLabel = "true|false", description = "GPTQ: quantize columns in order of decreasing Hessian diagonal")
    String actOrder;

    @Option(names = "--static-groups", arity = "0..1", fallbackValue = "true", paramLabel = "true|false", description = "GPTQ with --act-order: fix group scales up front")
    String staticGroups;

    @Option(names = "--damp", description = "GPTQ damping, fraction of the mean Hessian diagonal (default: 0.01)")
    String damp;

    @Option(names = "--lwc", arity = "0..1", fallbackValue = "true", paramLabel = "true|false", description = "OmniQuant: learnable weight clipping (default: on)")
    String lwc;

    @Option(names = "--let", arity = "0..1", fallbackValue = "true", paramLabel = "true|false", description = "OmniQuant: learnable equivalent transformation (default: on with --abits, and for OPT)")
    String let;

    @Option(names = "--epochs", description = "OmniQuant: epochs per block (default: 20, 40 at 2 bits)")
    String epochs;

    @Option(names = "--lwc-lr", description = "OmniQuant: AdamW learning rate of LWC (default: 0.01)")
    String lwcLr;

    @Option(names = "--let-lr", description = "OmniQuant: AdamW learning rate of LET (default: 0.005)")
    String letLr;

    @Option(names = "--batch-size", description = "OmniQuant: calibration windows per training step (default: 1)")
    String batchSize;

    @Option(names = "--aug-loss", arity = "0..1", fallbackValue = "true", paramLabel = "true|false", description = "OmniQuant: "
            + "the loss also measures the distance to the full-precision block's outputs on the quantized inputs (the reference's --aug_loss; default: off)")
    String augLoss;

    @Option(names = "--let-down", arity = "0..1", fallbackValue = "true", paramLabel = "true|false", description = "OmniQuant: "
            + "one more LET scale, between a gated MLP's up and down projections (AWQ's up→down pair; not in the reference), "
            + "so the down projection's input is smoothed too; Llama-family MLPs only (default: off)")
    String letDown;

    @Option(names = "--alpha", description = "SmoothQuant, and OmniQuant's LET start: migration strength, s = max|X|^α / max|W|^(1−α) (default: 0.5)")
    String alpha;

    @Option(names = "--omni-params", paramLabel = "DIR", description = "OmniQuant: folder of learned parameters per block (block-N.safetensors): "
            + "a block whose file is there is folded from it without training, a trained block's file is written there")
    String omniParams;

    @Option(names = "--calib", paramLabel = "FILE[,FILE...]", split = ",", description = "calibration text files (default: the three *.train.txt of data-samples)")
    List<String> calib = Defaults.calibration();

    @Option(names = "--nsamples", description = "calibration windows (default: 128)")
    String nsamples;

    @Option(names = "--seqlen", description = "tokens per calibration window (default: 512)")
    String seqlen;

    @Option(names = "--seed", description = "seed of the calibration draw (default: 0)")
    String seed;

    @Option(names = "--windows-per-task", paramLabel = "N", description = "calibration windows per Spark task (default: 8)")
    String windowsPerTask;

    @Option(names = "--eval-text", paramLabel = "FILE", description = "text to measure the quantized model's perplexity on (default: ${DEFAULT-VALUE})")
    String evalText = Defaults.evalText();

    @Option(names = "--eval-seqlen", paramLabel = "N", description = "window of the perplexity protocol (default: ${DEFAULT-VALUE})")
    int evalSeqlen = 512;

    @Option(names = "--no-eval", description = "do not measure perplexity after quantizing")
    boolean noEval;

    @Option(names = "--backend", paramLabel = "cpu|cuda|auto", description = "where tasks compute: cpu (ND4J), cuda (the task's GPU; "
            + "stops when CUDA cannot load), auto: the GPU Spark gave a task, or in local mode GPU 0 when CUDA loads, else cpu; "
            + "recipe key 'backend' (default: spark.blockquant.backend, else auto)")
    String backend;

    @Option(names = "--master", description = "Spark master URL (default: the spark-submit one, else local[*])")
    String master;

    @Option(names = "--json", description = "print one JSON object as the last line (store, ppl, seconds, ...)")
    boolean json;

    /** Recipe-file keys: the options that describe the method and calibration. */
    static final Set<String> RECIPE_KEYS = QuantizeSettings.recipeKeys();

    /** What a recipe file may hold: the settings' keys and {@code backend}. */
    static final Set<String> RECIPE_AND_RUN_KEYS = java.util.stream.Stream.concat(RECIPE_KEYS.stream(), java.util.stream.Stream.of("backend"))
            .collect(java.util.stream.Collectors.toUnmodifiableSet());

    @Override
    public Integer call() throws IOException {
        long start = System.nanoTime();
        Configuration conf = new Configuration();
        if (recipe != null) applyRecipe(RecipeFile.read(recipe, RECIPE_AND_RUN_KEYS, conf));
        // where to compute is no quantization setting: the recipe's key goes to Spark, not to QuantizeSettings
        String recipeBackend = fromRecipe.remove("backend");
        if (backend == null) backend = recipeBackend;
        if (backend != null) {
            try {
                io.blockquant.tensor.Backends.Choice.parse(backend, "--backend");
            } catch (IllegalArgumentException e) {
                throw recipeBackend != null && backend.equals(recipeBackend)
                        ? new IllegalArgumentException(recipe + ": key 'backend' = '" + backend + "': expected cpu, cuda or auto") : e;
            }
        }
        // executors resolve relative paths against their own working folders
        model = UserPaths.absolute(model, conf);
        workDir = UserPaths.absolute(workDir, conf);
        omniParams = UserPaths.absolute(omniParams, conf);
        Path modelDir = new Path(model);
        ModelSpec spec = ModelSpecReader.read(modelDir, conf);
        QuantizeSettings settings = settings(spec);
        if (omniParams != null && !(settings.calibrator() instanceof io.blockquant.algo.BlockCalibrator.OnBlockTargets)) {
            throw new IllegalArgumentException("--omni-params holds OmniQuant's learned parameters; use it with --method omniquant");
        }
        if (out == null) {
            if (resume) throw new IllegalArgumentException("--resume needs --out STORE: the store to continue");
            out = "stores/" + modelDir.getName() + "-" + settings.method() + "-w" + settings.weights().bits()
                    + (settings.weights().perChannel() ? "" : "g" + settings.weights().groupSize()) + "-"
                    + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss"));
        }
        out = UserPaths.absolute(out, conf);
        System.err.printf("quantize: %s%n  recipe: %s%n  %s%n", spec.describe(), settings.label(), settings.toJson());

        CalibrationSet calibration;
        try (TextTokenizer tok = TextTokenizer.load(modelDir, conf)) {
            List<int[]> parts = new ArrayList<>();
            for (String f : calib) parts.add(tok.encode(EvalCommand.readText(new Path(f), conf)));
            int[] tokens = parts.stream().flatMapToInt(java.util.Arrays::stream).toArray();
            calibration = CalibrationSet.draw(tokens, String.join(",", calib), settings.nsamples(), settings.seqlen(), settings.seed());
        }
        System.err.printf("  calibration: %d windows of %d tokens drawn (seed %d) from %d tokens of %s (token crc32 %08x)%n",
                calibration.size(), settings.seqlen(), settings.seed(), calibration.sourceTokens(), String.join(", ", calib),
                calibration.fingerprint());

        SparkSession spark = SparkSessions.getOrCreate("blockquant quantize", master, backend);
        QuantizeJob.Summary summary = QuantizeJob.run(spark,
                new QuantizeJob.Request(model, out, settings, resume, omniParams, calib, workDir), spec, calibration, System.err);

        System.out.printf(Locale.ROOT, "%-6s %9s %14s   %s%n", "block", "seconds", "output error", "worst layer (relative output error)");
        for (QuantizeJob.BlockSummary b : summary.blocks()) {
            if (b.skipped()) {
                System.out.printf(Locale.ROOT, "%-6d %9s %14s   %s%n", b.block(), "-", "-", "committed earlier (--resume)");
                continue;
            }
            System.out.printf(Locale.ROOT, "%-6d %9.1f %14.5f   %s%n", b.block(), b.seconds(), b.blockError(), b.worstLayer());
        }
        printPlacements(summary.placements());
        System.out.printf(Locale.ROOT, "store %s written in %.1f s (%s)%n", summary.store(), summary.seconds(), settings.label());
        double ppl = Double.NaN;
        if (!noEval) {
            ppl = EvalCommand.storePerplexity(spark, summary.store(), evalText, evalSeqlen, 128, 4).ppl();
            System.out.printf(Locale.ROOT, "perplexity on %s: %.4f (recorded in the store's eval.json)%n", new Path(evalText).getName(), ppl);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        if (json) {
            System.out.printf(Locale.ROOT, "{\"store\": \"%s\", \"method\": \"%s\", \"ppl\": %s, \"quantize_seconds\": %.2f, "
                            + "\"seconds\": %.2f, \"blocks\": %d}%n", summary.store().replace("\"", "\\\""), settings.label(),
                    Double.isNaN(ppl) ? "null" : String.format(Locale.ROOT, "%.6f", ppl), summary.seconds(), seconds,
                    summary.blocks().size());
        }
        return 0;
    }

    /** Keys whose values came from the recipe file (not overridden by a flag). */
    private final Map<String, String> fromRecipe = new java.util.LinkedHashMap<>();

    /** A settings error about a value the recipe file gave names the file and key, so the user knows where to look. */
    private IllegalArgumentException fromRecipe(IllegalArgumentException e) {
        String m = String.valueOf(e.getMessage());
        for (Map.Entry<String, String> kv : fromRecipe.entrySet()) {
            String flag = "--" + kv.getKey();
            // a value of the wrong type: "FILE: key 'wbits' = 'four' is not a valid int (...)"
            String typed = flag + " '" + kv.getValue() + "' is not a valid";
            if (m.startsWith(typed)) {
                return new IllegalArgumentException(recipe + ": key '" + kv.getKey() + "' = '" + kv.getValue() + "'" + m.substring(flag.length()
                        + kv.getValue().length() + 3), e);
            }
            if (m.startsWith(flag + " ") || m.startsWith(flag + ":") || m.startsWith(flag + ",")) {
                return new IllegalArgumentException(recipe + ": key '" + kv.getKey() + "' = '" + kv.getValue() + "': " + m, e);
            }
        }
        return e;
    }

    /** One line per executor JVM and GPU that ran block tasks: which blocks, how many tasks (block -1: embedding). */
    static void printPlacements(List<TaskDevices.Placement> placements) {
        Map<String, java.util.SortedSet<Integer>> blocks = new java.util.TreeMap<>();
        Map<String, Integer> tasks = new java.util.HashMap<>();
        for (TaskDevices.Placement p : placements) {
            String key = String.format(Locale.ROOT, "executor %s (pid %d, GPU %s)", p.executor(), p.pid(), p.gpu() == null ? "none" : p.gpu());
            blocks.computeIfAbsent(key, k -> new java.util.TreeSet<>()).add(p.block());
            tasks.merge(key, 1, Integer::sum);
        }
        blocks.forEach((key, b) -> System.out.printf(Locale.ROOT, "%s: %d block tasks, blocks %s%n", key, tasks.get(key),
                b.stream().map(String::valueOf).collect(java.util.stream.Collectors.joining(","))));
    }

    /** Recipe values for every key not given on the command line. */
    void applyRecipe(Map<String, String> values) {
        CommandLine.ParseResult parsed = cmd.commandLine().getParseResult();
        values.forEach((key, value) -> {
            if (!parsed.hasMatchedOption("--" + key)) fromRecipe.put(key, value);
        });
    }

    /**
     * The settings from the recipe file's keys and the flags given (a flag wins over the file), checked against
     * the model; an error about a value the file gave names the file and key.
     */
    QuantizeSettings settings(ModelSpec spec) {
        Map<String, String> keys = new java.util.LinkedHashMap<>(fromRecipe);
        CommandLine.ParseResult parsed = cmd.commandLine().getParseResult();
        for (String key : java.util.stream.Stream.concat(RECIPE_KEYS.stream(), java.util.stream.Stream.of("windows-per-task")).toList()) {
            if (parsed.hasMatchedOption("--" + key)) keys.put(key, parsed.matchedOption("--" + key).getValue());
        }
        try {
            QuantizeSettings s = QuantizeSettings.parse(keys, spec.family());
            s.checkFits(spec);
            return s;
        } catch (IllegalArgumentException e) {
            throw fromRecipe(e);
        }
    }
}
