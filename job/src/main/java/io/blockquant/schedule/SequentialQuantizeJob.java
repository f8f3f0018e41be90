package io.blockquant.schedule;

import io.blockquant.algo.CalibratedBlock;
import io.blockquant.algo.GptqQuantizer;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.algo.FpQuantizedLinear;
import io.blockquant.algo.Lorc;
import io.blockquant.algo.LorcCompensated;
import io.blockquant.algo.StoredWeight;
import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.FpQuantizer;
import io.blockquant.algo.RtnQuantizer;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.spark.HadoopConf;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.LayerError;
import io.blockquant.store.StoreWriter;
import io.blockquant.store.TensorRecord;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.io.PrintStream;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.IntStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.broadcast.Broadcast;
import org.apache.spark.sql.SparkSession;

/**
 * {@code quantize} in sequential mode, the papers' semantics: block i is calibrated on the outputs of the
 * already-quantized blocks 0..i-1. The calibration windows are split into partitions; each partition's
 * block inputs live as a file in the store's work area ({@link ActivationFiles}) and move from block to
 * block inside executors, never through the driver. Per block, for each true-sequential group of linear
 * layers ({@link BlockPlan}):
 * <ol>
 *   <li>one Spark job accumulates the group's input Hessian over the partitions (a sum, reduced on the
 *       driver), running each partition's block only as far as the group's input;</li>
 *   <li>one job quantizes the group's layers with GPTQ, a task per layer;</li>
 * </ol>
 * then one job runs the quantized block on every partition, writes the next block's inputs and measures
 * errors, and the driver commits the block to the store. RTN skips the Hessian jobs. On a cluster with GPUs
 * every block task holds one GPU and binds the tensor backend to it ({@link TaskDevices}).
 */
public final class SequentialQuantizeJob {

    private SequentialQuantizeJob() {}

    /** What to quantize, where to write it. */
    public record Request(String modelDir, String storePath, QuantizeSettings settings, boolean resume)
            implements Serializable {}

    /** One line of the summary per block. */
    public record BlockSummary(int block, double seconds, double blockError, Map<String, Double> layerErrors,
                               boolean skipped) {}

    /** {@code placements}: where every block task of this run ran (executor, pid, GPU), for the record. */
    public record Summary(String store, List<BlockSummary> blocks, double seconds, long calibrationTokens,
                          List<TaskDevices.Placement> placements) {
        public Summary(String store, List<BlockSummary> blocks, double seconds, long calibrationTokens) {
            this(store, blocks, seconds, calibrationTokens, List.of());
        }
    }

    public static Summary run(SparkSession spark, Request req, CalibrationSet calib, PrintStream log) {
        long start = System.nanoTime();
        JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        Configuration hadoop = sc.hadoopConfiguration();
        HadoopConf conf = new HadoopConf(hadoop);
        Path modelPath = new Path(req.modelDir());
        ModelSpec spec = ModelSpecReader.read(modelPath, hadoop);
        QuantizeSettings s = req.settings();
        checkGroups(spec, s);
        BlockPlan plan = BlockPlan.of(spec);

        StoreWriter store = StoreWriter.create(spark, req.storePath(), ModelFingerprint.of(modelPath, hadoop), req.resume());
        String recipeJson = s.toJson();
        store.writeJson("recipe.json", recipeJson);
        for (String f : List.of("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")) {
            try {
                if (modelPath.getFileSystem(hadoop).exists(new Path(modelPath, f))) store.copyModelFile(new Path(modelPath, f), f);
            } catch (IOException e) {
                throw new UncheckedIOException(new Path(modelPath, f) + ": cannot check (" + e.getMessage() + ")", e);
            }
        }
        if (!store.isBlockCommitted(TensorRecord.MODEL_BLOCK)) store.commitModelTensors(modelTensors(modelPath, hadoop, spec));

        int perTask = Math.max(1, s.windowsPerTask());
        int partitions = (calib.size() + perTask - 1) / perTask;
        List<Integer> parts = IntStream.range(0, partitions).boxed().toList();
        int seq = calib.seqlen();
        ActivationFiles acts = new ActivationFiles(store.workDir().toString());
        // OmniQuant's targets come from a second, full-precision stream (the reference's fp_inps)
        ActivationFiles fpActs = new ActivationFiles(store.workDir() + "/fp");
        boolean omni = s.isOmniQuant();
        Broadcast<CalibrationSet> windows = sc.broadcast(calib);
        String model = req.modelDir();
        TaskDevices devices = TaskDevices.of(sc);
        if (devices.usesGpus()) log.println("block tasks ask for one GPU each (spark.executor.resource.gpu.amount is set)");

        List<Integer> committed = store.committedBlocks();
        int first = 0;
        while (committed.contains(first)) first++;
        List<BlockSummary> summaries = new ArrayList<>();
        for (int b = 0; b < first; b++) summaries.add(new BlockSummary(b, 0, Double.NaN, Map.of(), true));
        try {
            if (first > 0 && first < spec.numLayers() && (!acts.isComplete(hadoop, first) || omni && !fpActs.isComplete(hadoop, first))) {
                throw new IllegalStateException(store.root() + ": blocks 0.." + (first - 1)
                        + " are committed but the inputs of block " + first + " are missing from "
                        + store.workDir() + "; delete the store and start again");
            }
            if (first == 0) {
                log.printf("embedding %d calibration windows of %d tokens in %d tasks%n", calib.size(), seq, partitions);
                devices.tasks(sc.parallelize(parts, partitions)).foreach(p -> {
                    TensorBackend be = devices.bind(-1, Nd4jBackend.INSTANCE);
                    CausalLm stem = ExecutorBlocks.stem(model, be, conf.get());
                    int[][] batch = windowsOf(windows.value(), p, perTask);
                    float[] h = be.scratchValue(() -> stem.embed(batch).toFloats());
                    acts.write(conf.get(), 0, p, h, batch.length * seq, h.length / (batch.length * seq));
                    if (omni) fpActs.write(conf.get(), 0, p, h, batch.length * seq, h.length / (batch.length * seq));
                });
                acts.markComplete(hadoop, 0);
                if (omni) fpActs.markComplete(hadoop, 0);
            }
            for (int i = first; i < spec.numLayers(); i++) {
                long t0 = System.nanoTime();
                final int block = i;
                Map<String, StoredWeight> layers = new LinkedHashMap<>();
                Map<String, float[]> done = new HashMap<>();
                List<TensorRecord> trained = null;
                Map<String, float[]> trainedValues = new HashMap<>();
                Map<String, long[]> trainedShapes = new HashMap<>();
                if (omni) {
                    trained = trainOmniQuant(sc, devices, model, block, parts, acts, fpActs, conf, s, seq, calib.size(), spec.numLayers(), log);
                    fpActs.markComplete(hadoop, block + 1);
                    BlockRecords.dequantize(trained, "", trainedValues, trainedShapes);
                }
                for (List<String> group : omni ? List.<List<String>>of() : s.isGptq() ? plan.groups() : List.of(plan.allLinears())) {
                    Broadcast<GptqQuantizer.PreparedHessian> hessian = null;
                    long tokens = 0;
                    if (s.isGptq()) {
                        Broadcast<Map<String, float[]>> soFar = sc.broadcast(new HashMap<>(done));
                        String input = group.get(0); // the layers of a group share their input
                        HessianAccumulator acc = devices.tasks(sc.parallelize(parts, partitions)).map(p -> {
                            TensorBackend be = devices.bind(block, Nd4jBackend.INSTANCE);
                            DecoderBlock fp = ExecutorBlocks.block(model, block, be, conf.get());
                            DecoderBlock current = BlockWork.withActivations(BlockWork.withWeights(fp, soFar.value()), s);
                            int[] shape = new int[2];
                            float[] x = acts.read(conf.get(), block, p, shape);
                            return BlockWork.hessian(current, input, x, shape[0] / seq, seq);
                        }).reduce(HessianAccumulator::merge);
                        soFar.destroy();
                        // once per group: q/k/v (and gate/up) share their input, so their Hessian's factor
                        hessian = sc.broadcast(GptqQuantizer.PreparedHessian.of(Nd4jBackend.INSTANCE, acc.hessian(), s.gptq()));
                        tokens = acc.tokens();
                    }
                    Broadcast<GptqQuantizer.PreparedHessian> h = hessian;
                    List<StoredWeight> quantized = devices.tasks(sc.parallelize(group, group.size())).map(module -> {
                        TensorBackend be = devices.bind(block, Nd4jBackend.INSTANCE);
                        DecoderBlock fp = ExecutorBlocks.block(model, block, be, conf.get());
                        Tensor w = BlockWork.find(fp, module).weight();
                        return quantizeLayer(w, h == null ? null : h.value(), s);
                    }).collect();
                    if (h != null) h.destroy();
                    for (int k = 0; k < group.size(); k++) {
                        layers.put(group.get(k), quantized.get(k));
                        done.put(group.get(k), quantized.get(k).dequantize());
                    }
                    if (s.isGptq()) {
                        log.printf(Locale.ROOT, "  block %d/%d: %s quantized (GPTQ on %d tokens)%n", block + 1,
                                spec.numLayers(), String.join(", ", group), tokens);
                    }
                }

                // the quantized block on every partition: the next block's inputs, and the errors
                Broadcast<Map<String, float[]>> all = sc.broadcast(omni ? trainedValues : done);
                Broadcast<Map<String, long[]>> allShapes = sc.broadcast(trainedShapes);
                boolean last = block == spec.numLayers() - 1;
                boolean perLayer = !omni || !s.omniquant().let();
                BlockStats stats = devices.tasks(sc.parallelize(parts, partitions)).map(p -> {
                    TensorBackend be = devices.bind(block, Nd4jBackend.INSTANCE);
                    DecoderBlock fp = ExecutorBlocks.block(model, block, be, conf.get());
                    DecoderBlock q = omni
                            ? BlockWork.rebuild(spec, block, all.value(), allShapes.value(), be)
                            : BlockWork.withWeights(fp, all.value());
                    q = BlockWork.withActivations(q, s);
                    int[] shape = new int[2];
                    float[] x = acts.read(conf.get(), block, p, shape);
                    BlockWork.Outputs out = BlockWork.outputs(fp, q, x, shape[0] / seq, seq, perLayer);
                    if (!last) acts.write(conf.get(), block + 1, p, out.hidden(), shape[0], shape[1]);
                    return out.stats();
                }).reduce(BlockStats::merge);
                all.destroy();
                allShapes.destroy();
                if (!last) acts.markComplete(hadoop, block + 1);

                CalibratedBlock calibrated = omni ? null
                        : new CalibratedBlock(BlockWork.withWeights(new ModelLoaderSource(modelPath, hadoop).block(block), done), layers);
                List<LayerError> errors = new ArrayList<>();
                Map<String, Double> layerErrors = new LinkedHashMap<>();
                for (String module : plan.allLinears()) {
                    double e = stats.layerError(module);
                    layerErrors.put(module, e);
                    errors.add(new LayerError(block, module, e, s.isGptq() ? layers.get(module).loss() : Double.NaN,
                            stats.layerTokens(module)));
                }
                errors.add(new LayerError(block, BLOCK_OUTPUT, stats.blockError(), Double.NaN, (long) calib.size() * seq));
                FaultInjection.beforeCommit(block);
                store.commitBlock(block, omni ? trained : BlockRecords.of(block, calibrated), errors);
                acts.deleteBlock(hadoop, block);
                if (omni) fpActs.deleteBlock(hadoop, block);
                double secs = (System.nanoTime() - t0) / 1e9;
                summaries.add(new BlockSummary(block, secs, stats.blockError(), layerErrors, false));
                log.printf(Locale.ROOT, "block %d/%d done in %.1f s: relative output error %.4f (worst layer %s %.4f)%n",
                        block + 1, spec.numLayers(), secs, stats.blockError(), worst(layerErrors), layerErrors.get(worst(layerErrors)));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(store.workDir() + ": " + e.getMessage(), e);
        } finally {
            windows.destroy();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        Map<String, Object> fields = new LinkedHashMap<>();
        fields.put("model", modelPath.getName());
        fields.put("method", s.label());
        fields.put("calibration_windows", calib.size());
        fields.put("calibration_seqlen", seq);
        fields.put("seconds", Math.round(seconds * 10) / 10.0);
        store.commit(fields);
        try {
            store.workDir().getFileSystem(hadoop).delete(store.workDir(), true);
        } catch (IOException e) {
            log.println("warning: cannot delete " + store.workDir() + ": " + e.getMessage());
        }
        return new Summary(store.root().toString(), summaries, seconds, (long) calib.size() * seq, devices.placements());
    }

    /**
     * OmniQuant on block {@code block}: the full-precision block's outputs on the full-precision stream are
     * both the training targets and the next block's full-precision inputs; then one task trains LWC/LET on
     * every calibration window (the reference trains a block on one GPU with all its samples) and returns
     * the folded, quantized block as store rows.
     */
    private static List<TensorRecord> trainOmniQuant(JavaSparkContext sc, TaskDevices devices, String model, int block, List<Integer> parts,
                                                     ActivationFiles acts, ActivationFiles fpActs, HadoopConf conf,
                                                     QuantizeSettings s, int seq, int windows, int blocks, PrintStream log) {
        devices.tasks(sc.parallelize(parts, parts.size())).foreach(p -> {
            TensorBackend be = devices.bind(block, Nd4jBackend.INSTANCE);
            DecoderBlock fp = ExecutorBlocks.block(model, block, be, conf.get());
            int[] shape = new int[2];
            float[] x = fpActs.read(conf.get(), block, p, shape);
            float[] y = be.scratchValue(() -> fp.forward(be.fromFloats(x, shape[0], shape[1]), shape[0] / seq, seq).toFloats());
            fpActs.write(conf.get(), block + 1, p, y, shape[0], shape[1]);
        });
        long t0 = System.nanoTime();
        List<TensorRecord> rows = devices.tasks(sc.parallelize(List.of(block), 1)).map(b -> {
            TensorBackend be = devices.bind(b, Nd4jBackend.INSTANCE);
            DecoderBlock fp = ExecutorBlocks.block(model, b, be, conf.get());
            float[] inputs = concat(acts, conf.get(), b, parts), targets = concat(fpActs, conf.get(), b + 1, parts);
            CalibratedBlock cb = io.blockquant.algo.OmniQuantCalibrator.calibrate(fp, inputs, targets, windows, seq,
                    s.omniquant(), s.seed() + b, msg -> System.err.printf("    block %d/%d omniquant: %s%n", b + 1, blocks, msg));
            return new ArrayList<>(BlockRecords.of(b, cb));
        }).collect().get(0);
        log.printf(Locale.ROOT, "  block %d/%d: OmniQuant trained in %.1f s (%s)%n", block + 1, blocks,
                (System.nanoTime() - t0) / 1e9, s.label());
        return rows;
    }

    private static float[] concat(ActivationFiles files, Configuration conf, int block, List<Integer> parts) throws IOException {
        List<float[]> chunks = new ArrayList<>();
        int total = 0;
        for (int p : parts) {
            float[] c = files.read(conf, block, p, new int[2]);
            chunks.add(c);
            total += c.length;
        }
        float[] out = new float[total];
        int at = 0;
        for (float[] c : chunks) {
            System.arraycopy(c, 0, out, at, c.length);
            at += c.length;
        }
        return out;
    }

    /**
     * One layer's weight in stored form: RTN (no Hessian) or GPTQ, INT levels or FP codes, then LoRC's
     * rank-r factors of the remaining error when asked for.
     */
    static StoredWeight quantizeLayer(Tensor w, GptqQuantizer.PreparedHessian hessian, QuantizeSettings s) {
        StoredWeight q;
        if (s.fpWeights() != null) {
            q = hessian == null ? rtnFp(w, s.fpWeights()) : GptqQuantizer.quantizeFp(w, hessian, s.gptq(), s.fpWeights());
        } else {
            q = hessian == null ? RtnQuantizer.quantize(w, s.weights()) : GptqQuantizer.quantize(w, hessian, s.gptq());
        }
        if (s.lorcRank() > 0) {
            TensorBackend be = w.backend();
            Lorc.Factors f = be.scratchValue(() -> Lorc.factors(w, be.fromFloats(q.dequantize(), w.shape()), s.lorcRank(), s.lorcFormat()));
            return new LorcCompensated(q, f);
        }
        return q;
    }

    static FpQuantizedLinear rtnFp(Tensor w, FpQuantSpec spec) {
        int rows = (int) w.size(0), cols = (int) w.size(1), group = spec.groupFor(cols);
        byte[] codes = new byte[rows * cols];
        float[] scales = FpQuantizer.encodeWeight(w.toFloats(), rows, cols, spec, codes);
        int[] gIdx = new int[cols];
        for (int c = 0; c < cols; c++) gIdx[c] = c / group;
        return new FpQuantizedLinear(rows, cols, spec, cols / group, codes, scales, gIdx, 0);
    }

    /** The layer-errors row that holds the whole block's relative output error. */
    public static final String BLOCK_OUTPUT = "<block output>";

    private static String worst(Map<String, Double> errors) {
        return errors.entrySet().stream().max(Map.Entry.comparingByValue()).map(Map.Entry::getKey).orElse("-");
    }

    static int[][] windowsOf(CalibrationSet calib, int partition, int perTask) {
        int from = partition * perTask, to = Math.min(calib.size(), from + perTask);
        int[][] out = new int[to - from][];
        for (int i = from; i < to; i++) out[i - from] = calib.windows().get(i);
        return out;
    }

    /** Every tensor outside the blocks (embeddings, positions, final norm, head) as block -1 rows. */
    static List<TensorRecord> modelTensors(Path modelDir, Configuration conf, ModelSpec spec) {
        List<TensorRecord> out = new ArrayList<>();
        try (Checkpoint ckpt = Checkpoint.open(modelDir, conf)) {
            ModelLoader loader = new ModelLoader(ckpt, spec, Nd4jBackend.INSTANCE);
            for (String name : new java.util.TreeSet<>(ckpt.tensorNames())) {
                if (loader.isBlockTensor(name)) continue;
                long[] shape = ckpt.entry(name).shape();
                out.add(TensorRecord.floats(TensorRecord.MODEL_BLOCK, name, "weight", ckpt.readFloats(name, shape), shape));
            }
        }
        return out;
    }

    /** Group sizes must divide every quantized layer's input width: checked before any work starts. */
    static void checkGroups(ModelSpec spec, QuantizeSettings s) {
        int g = s.weights().groupSize();
        if (g <= 0) return;
        for (int width : new int[] {spec.hiddenSize(), spec.intermediateSize(), spec.numHeads() * spec.headDim()}) {
            if (width % g != 0) {
                throw new IllegalArgumentException("--group " + g + " does not divide the input width " + width
                        + " of a linear layer of " + spec.describe() + "; choose a divisor of " + width);
            }
        }
    }

    /** Loads one full-precision block on the driver (to assemble what is stored). */
    private record ModelLoaderSource(Path dir, Configuration conf) {
        DecoderBlock block(int i) {
            try (Checkpoint ckpt = Checkpoint.open(dir, conf)) {
                return new ModelLoader(ckpt, ModelSpecReader.read(dir, conf), Nd4jBackend.INSTANCE).block(i);
            }
        }
    }
}
