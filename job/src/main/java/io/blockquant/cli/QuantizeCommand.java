package io.blockquant.cli;

import io.blockquant.algo.GptqConfig;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TextTokenizer;
import io.blockquant.quant.IntQuantSpec;
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
            "After the store is committed, its perplexity on --eval-text is measured (--no-eval skips it)."})
public final class QuantizeCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec cmd;

    @Option(names = "--model", paramLabel = "DIR", description = "model folder (config.json, safetensors, tokenizer.json) (default: ${DEFAULT-VALUE})")
    String model = Defaults.model();

    @Option(names = "--out", paramLabel = "STORE", description = "model store to write (default: stores/<model>-<method>-<time> under the working folder)")
    String out;

    @Option(names = "--resume", description = "continue an unfinished store at --out, skipping its committed blocks")
    boolean resume;

    @Option(names = "--recipe", paramLabel = "FILE", description = "recipe file (e.g. conf/gptq-w4a16-g64.conf)")
    String recipe;

    @Option(names = "--mode", description = "sequential (block i on the quantized prefix's outputs) or parallel (all blocks at once on the full-precision prefix's outputs) (default: ${DEFAULT-VALUE})")
    String mode = QuantizeSettings.SEQUENTIAL;

    @Option(names = "--method", description = "rtn, gptq or omniquant (default: ${DEFAULT-VALUE})")
    String method = "gptq";

    @Option(names = "--wbits", paramLabel = "N", description = "weight bits, 2..8 (default: ${DEFAULT-VALUE})")
    int wbits = 4;

    @Option(names = "--group", paramLabel = "G", description = "group of G input columns per scale; 0 = per output channel (default: ${DEFAULT-VALUE})")
    int group = 0;

    @Option(names = "--sym", description = "symmetric weights (default: asymmetric min-max)")
    boolean sym;

    @Option(names = "--abits", paramLabel = "N", description = "per-token activation bits at inference, 16 = off (default: ${DEFAULT-VALUE})")
    int abits = 16;

    @Option(names = "--wformat", description = "weight number format: int, fp4 (E2M1, needs --wbits 4) or fp8 (E4M3, needs --wbits 8) (default: ${DEFAULT-VALUE})")
    String wformat = "int";

    @Option(names = "--aformat", description = "activation format with --abits 8: int, fp8e4m3 or fp8e5m2 (default: ${DEFAULT-VALUE})")
    String aformat = "int";

    @Option(names = "--scale-constraint", description = "FP weight scales: none, m1 (powers of two) or m2 (channel scale times powers of two) (default: ${DEFAULT-VALUE})")
    String scaleConstraint = "none";

    @Option(names = "--lorc-rank", paramLabel = "R", description = "LoRC: keep a rank-R SVD of each layer's quantization error beside it; 0 = off (default: ${DEFAULT-VALUE})")
    int lorcRank = 0;

    @Option(names = "--lorc-format", description = "LoRC factor precision: fp32, fp16 or fp8 (default: ${DEFAULT-VALUE})")
    String lorcFormat = "fp16";

    @Option(names = "--lorc-svd", description = "LoRC's SVD: plain (the paper: best for the weight error) or hessian "
            + "(weighted by the layer's inputs: best for its output error; needs GPTQ) (default: ${DEFAULT-VALUE})")
    String lorcSvd = "plain";

    @Option(names = "--act-order", description = "GPTQ: quantize columns in order of decreasing Hessian diagonal")
    boolean actOrder;

    @Option(names = "--static-groups", description = "GPTQ with --act-order: fix group scales up front")
    boolean staticGroups;

    @Option(names = "--damp", description = "GPTQ damping, fraction of the mean Hessian diagonal (default: ${DEFAULT-VALUE})")
    double damp = 0.01;

    @Option(names = "--lwc", arity = "0..1", paramLabel = "true|false", description = "OmniQuant: learnable weight clipping (default: on)")
    Boolean lwc;

    @Option(names = "--let", arity = "0..1", paramLabel = "true|false", description = "OmniQuant: learnable equivalent transformation (default: on with --abits, and for OPT)")
    Boolean let;

    @Option(names = "--epochs", description = "OmniQuant: epochs per block (default: 20, 40 at 2 bits)")
    Integer epochs;

    @Option(names = "--lwc-lr", description = "OmniQuant: AdamW learning rate of LWC (default: 0.01)")
    Double lwcLr;

    @Option(names = "--let-lr", description = "OmniQuant: AdamW learning rate of LET (default: 0.005)")
    Double letLr;

    @Option(names = "--batch-size", description = "OmniQuant: calibration windows per training step (default: ${DEFAULT-VALUE})")
    int batchSize = 1;

    @Option(names = "--omni-params", paramLabel = "DIR", description = "OmniQuant: folder of learned parameters per block (block-N.safetensors): "
            + "a block whose file is there is folded from it without training, a trained block's file is written there")
    String omniParams;

    @Option(names = "--calib", paramLabel = "FILE[,FILE...]", split = ",", description = "calibration text files (default: the three *.train.txt of data-samples)")
    List<String> calib = Defaults.calibration();

    @Option(names = "--nsamples", description = "calibration windows (default: ${DEFAULT-VALUE})")
    int nsamples = 128;

    @Option(names = "--seqlen", description = "tokens per calibration window (default: ${DEFAULT-VALUE})")
    int seqlen = 512;

    @Option(names = "--seed", description = "seed of the calibration draw (default: ${DEFAULT-VALUE})")
    long seed = 0;

    @Option(names = "--windows-per-task", paramLabel = "N", description = "calibration windows per Spark task (default: ${DEFAULT-VALUE})")
    int windowsPerTask = 8;

    @Option(names = "--eval-text", paramLabel = "FILE", description = "text to measure the quantized model's perplexity on (default: ${DEFAULT-VALUE})")
    String evalText = Defaults.evalText();

    @Option(names = "--eval-seqlen", paramLabel = "N", description = "window of the perplexity protocol (default: ${DEFAULT-VALUE})")
    int evalSeqlen = 512;

    @Option(names = "--no-eval", description = "do not measure perplexity after quantizing")
    boolean noEval;

    @Option(names = "--master", description = "Spark master URL (default: the spark-submit one, else local[*])")
    String master;

    @Option(names = "--json", description = "print one JSON object as the last line (store, ppl, seconds, ...)")
    boolean json;

    /** Recipe-file keys: the options that describe the method and calibration. */
    static final Set<String> RECIPE_KEYS = Set.of("mode", "method", "wbits", "group", "sym", "abits", "act-order",
            "static-groups", "damp", "wformat", "aformat", "scale-constraint", "lorc-rank", "lorc-format", "lorc-svd", "nsamples", "seqlen", "seed", "lwc", "let", "epochs", "lwc-lr", "let-lr", "batch-size");

    @Override
    public Integer call() throws IOException {
        long start = System.nanoTime();
        Configuration conf = new Configuration();
        if (recipe != null) applyRecipe(RecipeFile.read(recipe, RECIPE_KEYS, conf));
        Path modelDir = new Path(model);
        ModelSpec spec = ModelSpecReader.read(modelDir, conf);
        QuantizeSettings settings;
        try {
            settings = settings(spec);
            settings.checkFits(spec);
        } catch (IllegalArgumentException e) {
            throw fromRecipe(e);
        }
        if (omniParams != null && !settings.isOmniQuant()) {
            throw new IllegalArgumentException("--omni-params holds OmniQuant's learned parameters; use it with --method omniquant");
        }
        if (out == null) {
            if (resume) throw new IllegalArgumentException("--resume needs --out STORE: the store to continue");
            out = "stores/" + modelDir.getName() + "-" + settings.method() + "-w" + settings.weights().bits()
                    + (settings.weights().perChannel() ? "" : "g" + settings.weights().groupSize()) + "-"
                    + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss"));
        }
        System.err.printf("quantize: %s%n  recipe: %s%n  %s%n", spec.describe(), settings.label(), settings.toJson());

        CalibrationSet calibration;
        try (TextTokenizer tok = TextTokenizer.load(modelDir, conf)) {
            List<int[]> parts = new ArrayList<>();
            for (String f : calib) parts.add(tok.encode(EvalCommand.readText(new Path(f), conf)));
            int[] tokens = parts.stream().flatMapToInt(java.util.Arrays::stream).toArray();
            calibration = CalibrationSet.draw(tokens, String.join(",", calib), nsamples, seqlen, seed);
        }
        System.err.printf("  calibration: %d windows of %d tokens drawn (seed %d) from %d tokens of %s%n",
                calibration.size(), seqlen, seed, calibration.sourceTokens(), String.join(", ", calib));

        SparkSession spark = SparkSessions.getOrCreate("blockquant quantize", master);
        QuantizeJob.Summary summary = QuantizeJob.run(spark,
                new QuantizeJob.Request(model, out, settings, resume, omniParams), calibration, System.err);

        System.out.printf(Locale.ROOT, "%-6s %9s %14s   %s%n", "block", "seconds", "output error", "worst layer (relative output error)");
        for (QuantizeJob.BlockSummary b : summary.blocks()) {
            if (b.skipped()) {
                System.out.printf(Locale.ROOT, "%-6d %9s %14s   %s%n", b.block(), "-", "-", "committed earlier (--resume)");
                continue;
            }
            var worst = b.layerErrors().entrySet().stream().max(Map.Entry.comparingByValue()).orElseThrow();
            System.out.printf(Locale.ROOT, "%-6d %9.1f %14.5f   %s %.5f%n", b.block(), b.seconds(), b.blockError(),
                    worst.getKey(), worst.getValue());
        }
        printPlacements(summary.placements());
        System.out.printf(Locale.ROOT, "store %s written in %.1f s (%s)%n", summary.store(), summary.seconds(), settings.label());
        double ppl = Double.NaN;
        if (!noEval) {
            ppl = EvalCommand.storePerplexity(spark, summary.store(), evalText, evalSeqlen, 128, 4);
            System.out.printf(Locale.ROOT, "perplexity on %s: %.4f%n", new Path(evalText).getName(), ppl);
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
        for (Map.Entry<String, String> e : values.entrySet()) {
            String flag = "--" + e.getKey();
            if (parsed.hasMatchedOption(flag)) continue;
            fromRecipe.put(e.getKey(), e.getValue());
            CommandLine.Model.OptionSpec opt = cmd.findOption(flag);
            try {
                opt.setValue(opt.type() == boolean.class || opt.type() == Boolean.class
                        ? parseBoolean(e.getValue()) : convert(opt, e.getValue()));
            } catch (RuntimeException ex) {
                throw new IllegalArgumentException(recipe + ": key '" + e.getKey() + "' = '" + e.getValue()
                        + "' is not a valid " + opt.type().getSimpleName() + " (" + ex.getMessage() + ")", ex);
            }
        }
    }

    private static Object convert(CommandLine.Model.OptionSpec opt, String value) {
        Class<?> t = opt.type();
        if (t == int.class || t == Integer.class) return Integer.parseInt(value);
        if (t == long.class) return Long.parseLong(value);
        if (t == double.class || t == Double.class) return Double.parseDouble(value);
        return value;
    }

    private static boolean parseBoolean(String v) {
        if (v.equalsIgnoreCase("true")) return true;
        if (v.equalsIgnoreCase("false")) return false;
        throw new IllegalArgumentException("expected true or false");
    }

    QuantizeSettings settings(ModelSpec spec) {
        if (!List.of("rtn", "gptq", "omniquant").contains(method)) {
            throw new IllegalArgumentException("--method '" + method + "' is not known to quantize (expected rtn, gptq or omniquant)");
        }
        boolean omni = method.equals("omniquant");
        if (!omni && (lwc != null || let != null || epochs != null || lwcLr != null || letLr != null || batchSize != 1)) {
            throw new IllegalArgumentException("--lwc, --let, --epochs, --lwc-lr, --let-lr and --batch-size are OmniQuant options; use --method omniquant");
        }
        if (wbits < 2 || wbits > 8) throw new IllegalArgumentException("--wbits must be 2..8, got " + wbits);
        if (group < 0) throw new IllegalArgumentException("--group must be 0 (per channel) or a positive size, got " + group);
        if (abits != 16 && (abits < 2 || abits > 8)) throw new IllegalArgumentException("--abits must be 2..8 or 16 (off), got " + abits);
        if (staticGroups && !actOrder) throw new IllegalArgumentException("--static-groups only applies with --act-order");
        if ((actOrder || staticGroups) && !method.equals("gptq")) throw new IllegalArgumentException("--act-order and --static-groups are GPTQ options, not rtn ones");
        if (!(damp >= 0 && damp < 1)) throw new IllegalArgumentException("--damp must be in [0, 1), got " + damp);
        IntQuantSpec w = new IntQuantSpec(wbits, group, sym);
        GptqConfig g = method.equals("gptq") ? new GptqConfig(w, damp, 128, actOrder, staticGroups) : null;
        io.blockquant.algo.OmniQuantConfig o = null;
        if (omni) {
            if (sym) throw new IllegalArgumentException("--sym: OmniQuant's learnable clipping is asymmetric (min-max); drop --sym");
            o = io.blockquant.algo.OmniQuantConfig.of(spec.family(), wbits, group, abits);
            o = new io.blockquant.algo.OmniQuantConfig(o.wbits(), o.groupSize(), o.abits(), lwc != null ? lwc : o.lwc(),
                    let != null ? let : o.let(), o.qkScale(), epochs != null ? epochs : o.epochs(), batchSize,
                    lwcLr != null ? lwcLr : o.lwcLr(), letLr != null ? letLr : o.letLr(), o.weightDecay(), o.alpha());
            if (!o.lwc() && !o.let()) throw new IllegalArgumentException("--method omniquant needs --lwc and/or --let");
        }
        io.blockquant.quant.FpQuantSpec fpw = switch (wformat) {
            case "int" -> {
                if (!scaleConstraint.equals("none")) throw new IllegalArgumentException("--scale-constraint applies to FP weights (--wformat fp4|fp8)");
                yield null;
            }
            case "fp4", "fp8" -> {
                int need = wformat.equals("fp4") ? 4 : 8;
                if (wbits != need) throw new IllegalArgumentException("--wformat " + wformat + " is " + need + " bits wide; got --wbits " + wbits);
                if (omni) throw new IllegalArgumentException("--wformat " + wformat + ": OmniQuant here learns INT clipping only");
                io.blockquant.quant.ScaleConstraint c = switch (scaleConstraint) {
                    case "none" -> io.blockquant.quant.ScaleConstraint.NONE;
                    case "m1" -> io.blockquant.quant.ScaleConstraint.M1;
                    case "m2" -> io.blockquant.quant.ScaleConstraint.M2;
                    default -> throw new IllegalArgumentException("--scale-constraint '" + scaleConstraint + "' (expected none, m1 or m2)");
                };
                yield new io.blockquant.quant.FpQuantSpec(need == 4 ? io.blockquant.quant.FpFormat.E2M1 : io.blockquant.quant.FpFormat.E4M3, group, c);
            }
            default -> throw new IllegalArgumentException("--wformat '" + wformat + "' (expected int, fp4 or fp8)");
        };
        io.blockquant.quant.FpFormat af = switch (aformat) {
            case "int" -> null;
            case "fp8e4m3", "fp8e5m2" -> {
                if (abits != 8) throw new IllegalArgumentException("--aformat " + aformat + " needs --abits 8, got " + abits);
                yield aformat.equals("fp8e4m3") ? io.blockquant.quant.FpFormat.E4M3 : io.blockquant.quant.FpFormat.E5M2;
            }
            default -> throw new IllegalArgumentException("--aformat '" + aformat + "' (expected int, fp8e4m3 or fp8e5m2)");
        };
        if (lorcRank < 0) throw new IllegalArgumentException("--lorc-rank must be >= 0, got " + lorcRank);
        if (lorcRank > 0 && omni) throw new IllegalArgumentException("--lorc-rank: LoRC follows RTN or GPTQ here, not OmniQuant");
        io.blockquant.algo.LorcFactorFormat lf = switch (lorcFormat) {
            case "fp32" -> io.blockquant.algo.LorcFactorFormat.FP32;
            case "fp16" -> io.blockquant.algo.LorcFactorFormat.FP16;
            case "fp8" -> io.blockquant.algo.LorcFactorFormat.FP8;
            default -> throw new IllegalArgumentException("--lorc-format '" + lorcFormat + "' (expected fp32, fp16 or fp8)");
        };
        if (!lorcSvd.equals("plain") && !lorcSvd.equals("hessian")) {
            throw new IllegalArgumentException("--lorc-svd '" + lorcSvd + "' (expected plain or hessian)");
        }
        if (lorcSvd.equals("hessian") && (lorcRank == 0 || !method.equals("gptq"))) {
            throw new IllegalArgumentException("--lorc-svd hessian weights LoRC by GPTQ's Hessian: it needs --method gptq and --lorc-rank > 0");
        }
        return new QuantizeSettings(method, w, abits == 16 ? 0 : abits, g, o, fpw, af, lorcRank, lorcRank > 0 ? lf : null,
                lorcSvd.equals("hessian"), nsamples, seqlen, seed, windowsPerTask, mode);
    }
}
