package io.blockquant.gpu;

import io.blockquant.tensor.Backends;
import io.blockquant.algo.OmniQuantCalibrator;
import io.blockquant.algo.OmniQuantConfig;
import io.blockquant.algo.omniquant.OmniQuantObjective;
import io.blockquant.cuda.CudaBackend;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.schedule.BlockLoop;
import io.blockquant.schedule.BlockPlan;
import io.blockquant.schedule.BlockWork;
import io.blockquant.tensor.TensorBackend;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.IntStream;

/**
 * OmniQuant over every block of one model on one GPU, for a machine with a CUDA toolkit but no Spark, Hadoop
 * or ND4J (staged by {@code cluster/gpu/stage-runs.sh}): the sequential pipeline of {@code quantize
 * --method omniquant} (block i trained on the quantized prefix's outputs against the full-precision block's
 * outputs, seed {@code b} for block b, as a quantize run with seed 0), written as each block's learned
 * parameters ({@code block-N.bqa}). Back on a machine with the full build, {@link OmniQuantParamsImport} turns
 * them into {@code quantize --omni-params} files, from which {@code quantize} folds the same blocks into a
 * store without training, and {@code eval --store} measures it. A block whose file exists in OUT_DIR is not
 * trained again (a run cut short continues).
 *
 * <p>{@code OmniQuantRun INPUTS.bqa OUT_ROOT CONFIG...}, CONFIG = {@code FAMILY:WBITS:GROUP:ABITS:LWC:LET:EPOCHS} (e.g.
 * {@code llama:2:64:16:true:false:40}). Each configuration trains in a thread of its own, into
 * {@code OUT_ROOT/<config>/} with its log beside it: the backend gives each thread its own CUDA stream, so the
 * small kernels of several runs overlap on one GPU, and their heap work on the CPU cores.
 */
public final class OmniQuantRun {

    private OmniQuantRun() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: OmniQuantRun INPUTS.bqa OUT_ROOT FAMILY:WBITS:GROUP:ABITS:LWC:LET:EPOCHS...");
            System.exit(2);
        }
        ArrayBundle in = ArrayBundle.read(Path.of(args[0]));
        Path root = Path.of(args[1]);
        Files.createDirectories(root);
        // every configuration resolved before any trains: a bad one stops the call naming it
        Map<String, OmniQuantConfig> configs = new LinkedHashMap<>();
        for (String config : Arrays.asList(args).subList(2, args.length)) configs.put(config, config(in, config));
        List<String> configNames = List.copyOf(configs.keySet());
        List<String> failed = ConfigRuns.runAll(root, configNames, configNames.size(), (config, name, log) -> {
            String family = config.split(":")[0];
            run(Backends.forGpuRunner(), in, family, CheckCases.spec(in, family), configs.get(config), root.resolve(name), log);
        });
        System.exit(failed.isEmpty() ? 0 : 1);
    }

    /** {@code FAMILY:WBITS:GROUP:ABITS:LWC:LET:EPOCHS} over the family's defaults ({@link OmniQuantConfig#of}). */
    private static OmniQuantConfig config(ArrayBundle in, String config) {
        String[] c = config.split(":");
        if (c.length != 7) throw new IllegalArgumentException("configuration '" + config + "': expected FAMILY:WBITS:GROUP:ABITS:LWC:LET:EPOCHS");
        OmniQuantConfig d = OmniQuantConfig.of(CheckCases.spec(in, c[0]).family(), Integer.parseInt(c[1]), Integer.parseInt(c[2]),
                Integer.parseInt(c[3]));
        return new OmniQuantConfig(d.wbits(), d.groupSize(), d.activations(), Boolean.parseBoolean(c[4]), Boolean.parseBoolean(c[5]),
                d.qkScale() && Boolean.parseBoolean(c[5]), Integer.parseInt(c[6]), d.batchSize(), d.lwcLr(), d.letLr(), d.weightDecay(), d.alpha());
    }

    static void run(TensorBackend be, ArrayBundle in, String family, ModelSpec spec, OmniQuantConfig cfg, Path out, PrintStream log)
            throws Exception {
        run(be, in, family, spec, cfg, out, log, (int) in.shape("tokens")[0], spec.numLayers());
    }

    /** The first {@code windows} calibration windows, the first {@code blocks} blocks (the GPU check's shorter run); returns the training seconds. */
    static double run(TensorBackend be, ArrayBundle in, String family, ModelSpec spec, OmniQuantConfig cfg, Path out, PrintStream log,
                      int windows, int blocks) throws Exception {
        Files.createDirectories(out);
        ModelLoader loader = new ModelLoader(CheckCases.weights(in, family), spec, be);
        int[] tokens = in.ints("tokens");
        int seq = (int) in.shape("tokens")[1];
        log.printf(Locale.ROOT, "OmniQuant %s on %s (%s): W%dA%d %s, LWC %s, LET %s, %d epochs, %d window(s) per step; %d windows × %d tokens%n",
                family, be.name(), be instanceof CudaBackend cb ? cb.deviceName() : "", cfg.wbits(), cfg.abits(),
                cfg.groupSize() == 0 ? "per-channel" : "g" + cfg.groupSize(), cfg.lwc(), cfg.let(), cfg.epochs(), cfg.batchSize(), windows, seq);
        long start = System.nanoTime();
        float[] qx = GpuCheck.embedAll(be, loader.stem(), tokens, windows, seq), fpx = qx;
        int width = seq * spec.hiddenSize();
        // the full-precision stream only feeds training: after the last block still to train, nothing reads it
        int lastTrained = blocks - 1;
        while (lastTrained >= 0 && Files.exists(out.resolve("block-" + lastTrained + ".bqa"))) lastTrained--;
        float[][] stream = {qx, fpx};
        double[] trainingSeconds = {0};
        int last = lastTrained;
        // the driver loop of quantize, in this JVM: each block on the quantized prefix's outputs, kept in memory
        BlockLoop.run(IntStream.range(0, blocks).boxed().toList(), 1, BlockPlan.of(spec), blocks, (long) windows * seq, "OmniQuant",
                b -> {
                    long t0 = System.nanoTime();
                    DecoderBlock fp = loader.block(b);
                    float[] targets = null;
                    if (b <= last) {
                        float[] fpIn = stream[1];
                        targets = new float[fpIn.length];
                        for (int w = 0; w < windows; w += GpuCheck.PASS_WINDOWS) {
                            int n = Math.min(GpuCheck.PASS_WINDOWS, windows - w);
                            float[] part = GpuCheck.slice(fpIn, w, n, width);
                            float[] y = be.scratchValue(() -> fp.forward(be.fromFloats(part, (long) n * seq, spec.hiddenSize()), n, seq).toFloats());
                            System.arraycopy(y, 0, targets, w * width, y.length);
                        }
                    }
                    Path file = out.resolve("block-" + b + ".bqa");
                    List<String> epochs = new ArrayList<>();
                    OmniQuantObjective objective;
                    double train = 0;
                    if (Files.exists(file)) {
                        objective = OmniQuantCalibrator.restore(fp, cfg, ArrayBundle.read(file).floatsByName(), file.toString());
                    } else {
                        long t1 = System.nanoTime();
                        objective = OmniQuantCalibrator.train(fp, stream[0], targets, windows, seq, cfg, b, e -> {
                            epochs.add(e);
                            log.printf("    block %d %s%n", b, e);
                        });
                        train = (System.nanoTime() - t1) / 1e9;
                        trainingSeconds[0] += train;
                        ArrayBundle saved = new ArrayBundle();
                        objective.learned().forEach((n, v) -> saved.putFloats(n, v, v.length));
                        Path tmp = out.resolve(".block-" + b + ".bqa.tmp");
                        saved.write(tmp);
                        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                    }
                    BlockWork.Outputs o = GpuCheck.outputs(fp, objective.fold(be).block(), stream[0], windows, seq, GpuCheck.PASS_WINDOWS, true);
                    stream[0] = o.hidden();
                    stream[1] = targets;
                    int steps = cfg.epochs() * (windows / cfg.batchSize());
                    log.printf(Locale.ROOT, "  block %d: %s%s%n", b,
                            epochs.isEmpty() ? "parameters from " + file.getFileName() : String.format(Locale.ROOT, "training %.1f s, %.2f ms/step", train, 1e3 * train / steps),
                            epochs.isEmpty() ? "" : "; " + epochs.get(0) + " ... " + epochs.get(epochs.size() - 1));
                    return new BlockLoop.Outcome(b, o.stats(), Map.of(), 0, (System.nanoTime() - t0) / 1e9);
                }, (o, errors) -> { }, () -> { }, log);
        double training = trainingSeconds[0];
        log.printf(Locale.ROOT, "OmniQuant %s, %d of %d blocks: %.1f s (training %.1f s)%n", family, blocks, spec.numLayers(),
                (System.nanoTime() - start) / 1e9, training);
        return training;
    }
}
