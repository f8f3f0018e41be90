package io.blockquant.gpu;

import io.blockquant.tensor.Backends;
import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.GptqQuantizer.PreparedHessian;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.cuda.CudaBackend;
import io.blockquant.eval.NllSum;
import io.blockquant.eval.TokenWindows;
import io.blockquant.eval.WindowScorer;
import io.blockquant.model.Family;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.schedule.BlockLoop;
import io.blockquant.schedule.BlockPlan;
import io.blockquant.schedule.BlockStats;
import io.blockquant.schedule.BlockStep;
import io.blockquant.schedule.BlockWork;
import io.blockquant.schedule.QuantizeSettings;
import io.blockquant.tensor.TensorBackend;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.IntStream;

/**
 * {@code quantize --method gptq} of one model on one GPU, then its perplexity, for a machine with a CUDA toolkit
 * but no Spark, Hadoop or ND4J (inputs from {@link RunInputs}): the sequential pipeline of {@link
 * io.blockquant.schedule.SequentialQuantizeJob} without the store. Per block and true-sequential group, the
 * group's input Hessian over the calibration windows (in quantize's partitions of 8 windows, summed in their
 * order), GPTQ (INT or FP weights, scale constraint) and LoRC per layer, then the quantized block (with its
 * activation quantization) on every window gives the next block's inputs. The quantized model is then scored
 * on the eval tokens as {@code --eval-text} would be (windows of 512, at most 128, 4 per batch).
 *
 * <p>{@code GptqRun INPUTS.bqa OUT_DIR CONFIG...}, CONFIG = {@code FAMILY:WEIGHTS:GROUP:ACTS:CONSTRAINT:LORC[:SEED]}:
 * WEIGHTS {@code int2..int8|fp4|fp8}, GROUP 0 (per channel) or a size, ACTS {@code none|int8|fp8e4m3|fp8e5m2},
 * CONSTRAINT {@code none|m1|m2} (FP weights), LORC 0, a rank, or a rank and {@code h} (Hessian-weighted SVD),
 * SEED the calibration draw ({@code tokens/SEED} of the inputs; default their first), e.g. {@code
 * llama:fp4:64:fp8e4m3:m2:8h:3}. Configurations run {@code -Dgpu.threads} (default 16) at a time ({@link
 * ConfigRuns}) and write {@code OUT_DIR/<config>.log} and, last, {@code OUT_DIR/<config>.json} with the
 * perplexity; one whose json exists is skipped (a call cut short continues). {@code -Dgpu.backend=cpu} runs
 * on ND4J instead (to check this runner against {@code quantize}).
 */
public final class GptqRun {

    /** quantize's defaults: windows per Spark task (the Hessian's partial sums), windows per eval task, eval window. */
    static final int WINDOWS_PER_TASK = 8, EVAL_PER_TASK = 4, EVAL_SEQLEN = 512, EVAL_MAX_WINDOWS = 128;

    private GptqRun() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: GptqRun INPUTS.bqa OUT_DIR FAMILY:WEIGHTS:GROUP:ACTS:CONSTRAINT:LORC[:SEED]...");
            System.exit(2);
        }
        ArrayBundle in = ArrayBundle.read(Path.of(args[0]));
        Path out = Path.of(args[1]);
        Files.createDirectories(out);
        // every configuration resolved before any runs: a bad one stops the call naming it
        Map<String, QuantizeSettings> settings = new LinkedHashMap<>();
        for (String config : Arrays.asList(args).subList(2, args.length)) {
            if (Files.exists(out.resolve(config.replace(':', '-') + ".json"))) continue; // done by an earlier call
            String tokens = calibration(config);
            settings.put(config, settings(config, (int) in.shape(tokens)[0], (int) in.shape(tokens)[1]));
        }
        List<String> failed = ConfigRuns.runAll(out, List.copyOf(settings.keySet()), Integer.getInteger("gpu.threads", 16), (config, name, log) -> {
            QuantizeSettings s = settings.get(config);
            String family = config.split(":")[0];
            double ppl = run(Backends.forGpuRunner(), in, calibration(config), family, CheckCases.spec(in, family), s, log);
            Files.writeString(out.resolve(name + ".json"), String.format(Locale.ROOT,
                    "{\"config\": \"%s\", \"method\": \"%s\", \"ppl\": %.6f, \"recipe\": %s}%n", config, s.label(), ppl, s.toJson()));
        });
        System.exit(failed.isEmpty() ? 0 : 1);
    }

    /** The calibration windows of a configuration: {@code tokens/SEED}, or the inputs' first draw without a SEED. */
    private static String calibration(String config) {
        String[] c = config.split(":");
        return c.length > 6 ? "tokens/" + c[6] : "tokens";
    }

    /**
     * A configuration string as the settings {@code quantize --method gptq} resolves from the same flags: the
     * string becomes those recipe keys, read by {@link QuantizeSettings#parse}.
     */
    static QuantizeSettings settings(String config, int nsamples, int seqlen) {
        String[] c = config.split(":");
        if (c.length != 6 && c.length != 7) {
            throw new IllegalArgumentException("configuration '" + config + "': expected FAMILY:WEIGHTS:GROUP:ACTS:CONSTRAINT:LORC[:SEED]");
        }
        boolean fp = c[1].startsWith("fp");
        if (!fp && !c[1].startsWith("int")) throw new IllegalArgumentException("configuration '" + config + "': weights intN, fp4 or fp8, got " + c[1]);
        Map<String, String> keys = new LinkedHashMap<>();
        keys.put("method", "gptq");
        keys.put("wbits", c[1].substring(fp ? 2 : 3));
        keys.put("wformat", fp ? c[1] : "int");
        keys.put("group", c[2]);
        switch (c[3]) {
            case "none" -> { }
            case "int8" -> keys.put("abits", "8");
            default -> {
                keys.put("abits", "8");
                keys.put("aformat", c[3]);
            }
        }
        keys.put("scale-constraint", c[4]);
        boolean weighted = c[5].endsWith("h");
        keys.put("lorc-rank", weighted ? c[5].substring(0, c[5].length() - 1) : c[5]);
        if (weighted) keys.put("lorc-svd", "hessian");
        if (c.length > 6) keys.put("seed", c[6]);
        keys.put("nsamples", String.valueOf(nsamples));
        keys.put("seqlen", String.valueOf(seqlen));
        keys.put("windows-per-task", String.valueOf(WINDOWS_PER_TASK));
        try {
            return QuantizeSettings.parse(keys, Family.valueOf(c[0].toUpperCase(Locale.ROOT)));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("configuration '" + config + "': " + e.getMessage(), e);
        }
    }

    /**
     * Quantizes every block of {@code family} as {@code s} says, calibrated on the windows {@code calibration} of
     * the inputs, and returns the perplexity on the eval tokens.
     */
    static double run(TensorBackend be, ArrayBundle in, String calibration, String family, ModelSpec spec, QuantizeSettings s,
                      PrintStream log) {
        Quantized q = quantize(be, in, calibration, family, spec, s, (int) in.shape(calibration)[0], log);
        long start = System.nanoTime();
        List<int[]> windows = TokenWindows.split(in.ints("eval"), EVAL_SEQLEN, EVAL_MAX_WINDOWS);
        double ppl = perplexity(q.model(), windows);
        log.printf(Locale.ROOT, "quantized in %.1f s; perplexity %.6f on %d windows of %d eval tokens (%.1f s)%n", q.seconds(),
                ppl, windows.size(), EVAL_SEQLEN, (System.nanoTime() - start) / 1e9);
        return ppl;
    }

    /** The quantized model, the seconds its quantization took and the part of them in the GPTQ solver. */
    record Quantized(CausalLm model, double seconds, double solverSeconds) {}

    /**
     * The sequential pipeline on the first {@code windows} windows of {@code calibration}: per block and
     * true-sequential group, the group's input Hessian, then each layer's quantized weight; the quantized
     * block (with its activation quantization) then gives the next block's inputs.
     */
    static Quantized quantize(TensorBackend be, ArrayBundle in, String calibration, String family, ModelSpec spec,
                              QuantizeSettings s, int windows, PrintStream log) {
        ModelLoader loader = new ModelLoader(CheckCases.weights(in, family), spec, be);
        int[] tokens = in.ints(calibration);
        int seq = (int) in.shape(calibration)[1];
        int width = seq * spec.hiddenSize();
        log.printf(Locale.ROOT, "%s on %s (%s): %s; %d windows × %d tokens (%s)%n", family, be.name(),
                be instanceof CudaBackend cb ? cb.deviceName() : "", s.label(), windows, seq, calibration);
        long start = System.nanoTime();
        float[][] x = {GpuCheck.embedAll(be, loader.stem(), tokens, windows, seq)};
        DecoderBlock[] quantizedBlocks = new DecoderBlock[spec.numLayers()];
        double[] solverSeconds = {0};
        BlockPlan plan = BlockPlan.of(spec);
        // the driver loop of quantize, in this JVM: each block on the quantized prefix's outputs, kept in memory
        BlockLoop.run(IntStream.range(0, spec.numLayers()).boxed().toList(), 1, plan, spec.numLayers(), (long) windows * seq,
                "GPTQ", b -> {
                    long t0 = System.nanoTime();
                    DecoderBlock fp = loader.block(b);
                    BlockStep.OnBackend inputs = new BlockStep.OnBackend(
                            BlockStep.Inputs.slices(x[0], seq, spec.hiddenSize(), WINDOWS_PER_TASK), fp.linears().get(0).weight().backend());
                    BlockStep.Layers layers = BlockStep.layers(fp, s.calibrator(), plan, s, inputs, seq);
                    float[] next = new float[x[0].length];
                    BlockStats stats = BlockStep.errors(fp, layers.block(), s, inputs, seq,
                            (p, hidden, rows, cols) -> System.arraycopy(hidden, 0, next, p * WINDOWS_PER_TASK * width, hidden.length));
                    x[0] = next;
                    quantizedBlocks[b] = BlockWork.withActivations(layers.block().block(), s);
                    solverSeconds[0] += layers.calibrationSeconds();
                    log.printf(Locale.ROOT, "  block %d: GPTQ solver %.2f s%n", b, layers.calibrationSeconds());
                    return new BlockLoop.Outcome(b, stats, layers.losses(), layers.tokens(), (System.nanoTime() - t0) / 1e9);
                }, (o, errors) -> { }, () -> { }, log);
        CausalLm fpModel = loader.model();
        CausalLm model = new CausalLm(spec, fpModel.tokenEmbedding(), fpModel.positions(), fpModel.projectIn(),
                List.of(quantizedBlocks), fpModel.finalNorm(), fpModel.projectOut(), fpModel.head());
        return new Quantized(model, (System.nanoTime() - start) / 1e9, solverSeconds[0]);
    }

    /** Perplexity over {@code windows}, scored {@link #EVAL_PER_TASK} at a time and summed in order, as {@code eval} does. */
    static double perplexity(CausalLm model, List<int[]> windows) {
        NllSum nll = NllSum.ZERO;
        for (int w = 0; w < windows.size(); w += EVAL_PER_TASK) {
            nll = nll.plus(WindowScorer.score(model, windows.subList(w, Math.min(windows.size(), w + EVAL_PER_TASK))));
        }
        return nll.perplexity();
    }
}
