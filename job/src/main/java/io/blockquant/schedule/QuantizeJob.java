package io.blockquant.schedule;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.InputRanges;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelFormatException;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.spark.HadoopConf;
import io.blockquant.store.StoreLease;
import io.blockquant.store.StoreWriter;
import io.blockquant.store.TensorRecord;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.io.PrintStream;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.stream.IntStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

/**
 * {@code quantize}: runs {@link SequentialQuantizeJob} or {@link ParallelQuantizeJob} by the recipe's mode,
 * and holds what both modes do the same way: opening the store (recipe, model files, the tensors outside
 * the blocks), the calibration partitions, the embedding and full-precision passes, one layer's
 * quantization, a block's error rows, and finishing the store.
 */
public final class QuantizeJob {

    private QuantizeJob() {}

    /**
     * What to quantize, where to write it.
     *
     * @param omniParams OmniQuant: the folder of learned parameters per block ({@link OmniQuantParameterFiles}),
     *                   read where present instead of training and written where trained; null for none
     * @param calibrationFiles the calibration text files, recorded (size, SHA-256) in recipe.json ({@link RunRecipe})
     * @param workDir    where the work area goes instead of STORE/_work (a folder per store under it; local disk or
     *                   HDFS beside a store on S3); null for STORE/_work
     */
    public record Request(String modelDir, String storePath, QuantizeSettings settings, boolean resume, String omniParams,
                          List<String> calibrationFiles, String workDir) implements Serializable {
        public Request(String modelDir, String storePath, QuantizeSettings settings, boolean resume, String omniParams) {
            this(modelDir, storePath, settings, resume, omniParams, List.of(), null);
        }

        public Request(String modelDir, String storePath, QuantizeSettings settings, boolean resume) {
            this(modelDir, storePath, settings, resume, null);
        }
    }

    /** One line of the summary per block. */
    public record BlockSummary(int block, double seconds, double blockError, Map<String, Double> layerErrors,
                               boolean skipped) {

        /**
         * The layer with the largest relative output error and that error, or, where no layer's error was measured
         * (OmniQuant and SmoothQuant change the layers' inputs, so only the block's output is compared: the layers'
         * errors are NaN), that.
         */
        public String worstLayer() {
            return layerErrors.entrySet().stream().filter(e -> !e.getValue().isNaN()).max(Map.Entry.comparingByValue())
                    .map(e -> String.format(java.util.Locale.ROOT, "%s %.5f", e.getKey(), e.getValue()))
                    .orElse("none measured (the method changes the layers' inputs; the block's output is compared)");
        }
    }

    /** {@code placements}: where every block task of this run ran (executor, pid, GPU), for the record. */
    public record Summary(String store, List<BlockSummary> blocks, double seconds, long calibrationTokens,
                          List<TaskDevices.Placement> placements) {
        public Summary(String store, List<BlockSummary> blocks, double seconds, long calibrationTokens) {
            this(store, blocks, seconds, calibrationTokens, List.of());
        }
    }

    /** The layer-errors row that holds the whole block's relative output error. */
    public static final String BLOCK_OUTPUT = "<block output>";

    /** Quantizes {@code req}'s model into its store, reading the model's config.json (callers that have not). */
    public static Summary run(SparkSession spark, Request req, CalibrationSet calib, PrintStream log) {
        return run(spark, req, ModelSpecReader.read(new Path(req.modelDir()), spark.sparkContext().hadoopConfiguration()), calib, log);
    }

    /**
     * Quantizes {@code req}'s model, whose config.json the caller read into {@code spec} (the command line reads it
     * once, to check the recipe's fit before Spark starts); executor tasks receive it in a {@link ModelRef}.
     */
    public static Summary run(SparkSession spark, Request req, ModelSpec spec, CalibrationSet calib, PrintStream log) {
        return run(spark, req, spec, calib, new SparkBlockExecutor(JavaSparkContext.fromSparkContext(spark.sparkContext())), log);
    }

    /** The same, with the block tasks on {@code executor} (Spark's, or this JVM's); the store is written through Spark. */
    static Summary run(SparkSession spark, Request req, ModelSpec spec, CalibrationSet calib, BlockExecutor executor, PrintStream log) {
        if (req.omniParams() != null) {
            TensorBackend be = TaskDevices.of(JavaSparkContext.fromSparkContext(spark.sparkContext())).driverBackend();
            checkLearnedParameters(spark.sparkContext().hadoopConfiguration(), req, spec, be);
        }
        boolean fresh = !StoreWriter.exists(spark, req.storePath());
        // one writer per store: a second run is refused here, before it can touch anything of the first's
        StoreLease lease = StoreLease.acquire(spark.sparkContext().hadoopConfiguration(), req.storePath(), req.resume());
        try {
            Run run = begin(spark, req, spec, calib, executor, log);
            return req.settings().isParallel() ? ParallelQuantizeJob.run(run) : SequentialQuantizeJob.run(run);
        } catch (Throwable e) { // Spark's exceptions are checked but undeclared: catch them all
            // a store this run created and that holds no committed block is worth nothing: leave no trace of it
            if (fresh && StoreWriter.discardIfNoBlock(spark, req.storePath())) {
                log.println("removed " + req.storePath() + ": this run created it and committed no block");
            }
            throw e;
        } finally {
            lease.close();
        }
    }

    /**
     * What both modes start from: the executor, the store (opened, its recipe checked), the block plan, the
     * calibration partitions, and the run's start time.
     */
    record Run(JavaSparkContext sc, TaskDevices devices, BlockExecutor executor, Request req, ModelRef model, BlockPlan plan, StoreWriter store,
               CalibrationSet calib, List<Integer> parts, long start, PrintStream log) {
        QuantizeSettings settings() {
            return req.settings();
        }

        Configuration hadoop() {
            return executor.conf();
        }

        /**
         * The driver loop of this run ({@link BlockLoop}): the blocks of {@code todo}, {@code atOnce} at a time, each
         * committed to the store from its rows in the work area ({@code folded}: rows the step wrote whole, as
         * OmniQuant and parallel mode do; else quantized layers beside the full-precision block), then its work
         * files removed and {@code cleanup} run on it.
         */
        List<BlockSummary> loop(List<Integer> todo, int atOnce, BlockFiles files, boolean folded, BlockLoop.Step step,
                                BlockCleanup cleanup) {
            Configuration hadoop = hadoop();
            return BlockLoop.run(todo, atOnce, plan, model.spec().numLayers(), (long) calib.size() * calib.seqlen(),
                    settings().method().toUpperCase(java.util.Locale.ROOT), step, (o, errors) -> {
                        FaultInjection.beforeCommit(o.block());
                        store.commitRows(o.block(), blockRows(sc, devices, model, o.block(), folded, files, new HadoopConf(hadoop),
                                plan.allLinears()), errors);
                        files.deleteBlock(hadoop, o.block());
                        cleanup.after(o.block());
                    }, executor::cancelAll, log);
        }

        /** The manifest written, the work area removed: the run's summary. */
        Summary finish(List<BlockSummary> blocks) {
            return QuantizeJob.finish(store, hadoop(), model, settings(), calib, start, blocks, executor.placements(), log);
        }
    }

    /** What a mode removes from the work area once a block is committed. */
    @FunctionalInterface
    interface BlockCleanup {
        void after(int block) throws IOException;
    }

    private static Run begin(SparkSession spark, Request req, ModelSpec spec, CalibrationSet calib, BlockExecutor executor,
                             PrintStream log) {
        long start = System.nanoTime();
        JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        // every weight read and checked before the store exists: bad input leaves nothing behind
        TaskDevices devices = TaskDevices.of(sc);
        CheckpointScan.check(sc, devices, req.modelDir(), spec, new HadoopConf(executor.conf()));
        StoreWriter store = openStore(spark, req, spec, executor.conf());
        if (executor.usesGpus()) log.println("block tasks ask for one GPU each (spark.executor.resource.gpu.amount is set)");
        return new Run(sc, devices, executor, req, new ModelRef(req.modelDir(), spec), BlockPlan.of(spec), store, calib,
                partitions(calib, req.settings()), start, log);
    }

    /**
     * Every learned-parameter file of {@code --omni-params} restored on the driver before any work, so that one
     * that does not fit the recipe or the model (a missing vector, a wrong length, a NaN) stops the run before
     * a block is committed, naming the file.
     */
    static void checkLearnedParameters(Configuration hadoop, Request req, ModelSpec spec, TensorBackend be) {
        Path dir = new Path(req.modelDir());
        BlockCalibrator.OnBlockTargets calibrator = (BlockCalibrator.OnBlockTargets) req.settings().calibrator();
        try (Checkpoint ckpt = Checkpoint.open(dir, hadoop)) {
            ModelLoader loader = new ModelLoader(ckpt, spec, be);
            for (int b = 0; b < spec.numLayers(); b++) {
                Map<String, float[]> learned = OmniQuantParameterFiles.read(hadoop, req.omniParams(), b);
                if (learned == null) continue; // trained by this run
                int block = b;
                be.scratchValue(() -> {
                    calibrator.check(loader.block(block), learned, OmniQuantParameterFiles.file(req.omniParams(), block).toString());
                    return null;
                });
            }
        }
    }

    /**
     * Opens the store for {@code req}: on {@code --resume} the recipe must be the one the store was started
     * with; writes recipe.json and the model's config and tokenizer files, and commits the tensors outside the
     * blocks (once).
     */
    static StoreWriter openStore(SparkSession spark, Request req, ModelSpec spec, Configuration hadoop) {
        Path modelPath = new Path(req.modelDir());
        StoreWriter store = StoreWriter.create(spark, req.storePath(), ModelFingerprint.of(modelPath, hadoop), req.resume());
        if (req.workDir() != null) store.workIn(new Path(req.workDir()));
        String recipeJson = RunRecipe.json(req, hadoop);
        if (req.resume()) RunRecipe.requireSame(store.root(), hadoop, recipeJson);
        store.writeJson("recipe.json", recipeJson);
        for (String f : List.of("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")) {
            try {
                if (modelPath.getFileSystem(hadoop).exists(new Path(modelPath, f))) store.copyModelFile(new Path(modelPath, f), f);
            } catch (IOException e) {
                throw new UncheckedIOException(new Path(modelPath, f) + ": cannot check (" + e.getMessage() + ")", e);
            }
        }
        if (!store.isBlockCommitted(TensorRecord.MODEL_BLOCK)) commitModelTensors(spark, store, req.modelDir(), spec, hadoop);
        return store;
    }

    /** Partition numbers of the calibration windows, {@code windowsPerTask} windows each. */
    static List<Integer> partitions(CalibrationSet calib, QuantizeSettings s) {
        int perTask = Math.max(1, s.windowsPerTask());
        return IntStream.range(0, (calib.size() + perTask - 1) / perTask).boxed().toList();
    }

    /** One pass of tasks: the token embeddings of every partition's windows, written as block 0's inputs into each of {@code targets}. */
    static void embed(BlockExecutor executor, ModelRef model, BlockExecutor.Shared<CalibrationSet> windows, List<Integer> parts,
                      int windowsPerTask, ActivationFiles... targets) throws IOException {
        int perTask = Math.max(1, windowsPerTask);
        executor.map(parts, -1, (p, be, conf) -> {
            int seq = windows.value().seqlen();
            int[][] batch = windowsOf(windows.value(), p, perTask);
            float[] h = be.scratchValue(() -> ExecutorBlocks.embed(model, batch, be, conf));
            for (ActivationFiles t : targets) t.write(conf, 0, p, h, batch.length * seq, h.length / (batch.length * seq));
            return null;
        });
        for (ActivationFiles t : targets) t.markComplete(executor.conf(), 0);
    }

    /**
     * One pass of tasks: the full-precision block {@code block} on every partition of {@code files}' inputs of that
     * block, written as the inputs of block + 1 (the full-precision stream). With {@code ranged} (else null), the
     * ranges of the block's inputs that it starts from ({@link BlockCalibrator.OnBlockTargets#rangedInputs}), taken on
     * the same forward passes and merged in window order; null when it asks for none.
     */
    static InputRanges fullPrecisionPass(BlockExecutor executor, ModelRef model, int block, List<Integer> parts, ActivationFiles files,
                                         int seq, BlockCalibrator.OnBlockTargets ranged) throws IOException {
        List<InputRanges> ranges = executor.map(parts, block, (p, be, conf) -> {
            DecoderBlock fp = ExecutorBlocks.block(model, block, be, conf);
            List<String> names = ranged == null ? List.of() : ranged.rangedInputs(fp);
            InputRanges.Collector collector = names.isEmpty() ? null : new InputRanges.Collector(names, seq);
            DecoderBlock run = collector == null ? fp : collector.tap(fp);
            int[] shape = new int[2];
            float[] x = files.read(conf, block, p, shape);
            float[] y = be.scratchValue(() -> run.forward(be.fromFloats(x, shape[0], shape[1]), shape[0] / seq, seq).toFloats());
            files.write(conf, block + 1, p, y, shape[0], shape[1]);
            return collector == null ? null : collector.ranges();
        });
        files.markComplete(executor.conf(), block + 1);
        return ranges.isEmpty() || ranges.contains(null) ? null : InputRanges.merge(ranges);
    }

    /**
     * Every partition's inputs of {@code block} in partition order, as one array per {@code seq}-token window (all of a
     * 70B block's 128 × 2048 windows are 2³¹ values, past what one Java array holds), read ahead on a few threads.
     */
    static float[][] windows(ActivationFiles files, Configuration conf, int block, List<Integer> parts, int seq) throws IOException {
        List<float[]> out = new ArrayList<>();
        try (PartitionReads reads = new PartitionReads(files.inputs(conf, block, parts), 0, "block " + block + " windows")) {
            for (int p = 0; p < parts.size(); p++) {
                int[] shape = new int[2];
                float[] c = reads.take(p, shape);
                if (shape[0] % seq != 0) {
                    throw new IOException("block " + block + " partition " + parts.get(p) + ": " + shape[0] + " rows are not whole windows of " + seq);
                }
                java.util.Collections.addAll(out, io.blockquant.algo.BlockCalibrator.windows(c, shape[0] / seq));
            }
        }
        return out.toArray(new float[0][]);
    }

    /**
     * Writes the manifest (the store's commit point), removes the work area and returns the run's summary,
     * its blocks in order; {@code start} is the run's {@link System#nanoTime()} at its beginning.
     */
    static Summary finish(StoreWriter store, Configuration hadoop, ModelRef model, QuantizeSettings s, CalibrationSet calib,
                          long start, List<BlockSummary> blocks, List<TaskDevices.Placement> placements, PrintStream log) {
        double seconds = (System.nanoTime() - start) / 1e9;
        Map<String, Object> fields = new LinkedHashMap<>();
        fields.put("model", new Path(model.dir()).getName());
        fields.put("method", s.label());
        fields.put("mode", s.mode());
        fields.put("calibration_windows", calib.size());
        fields.put("calibration_seqlen", calib.seqlen());
        fields.put("seconds", Math.round(seconds * 10) / 10.0);
        store.commit(fields);
        try {
            store.workDir().getFileSystem(hadoop).delete(store.workDir(), true);
        } catch (IOException e) {
            log.println("warning: cannot delete " + store.workDir() + ": " + e.getMessage());
        }
        List<BlockSummary> ordered = new ArrayList<>(blocks);
        ordered.sort(java.util.Comparator.comparingInt(BlockSummary::block));
        return new Summary(store.root().toString(), ordered, seconds, (long) calib.size() * calib.seqlen(), placements);
    }

    static int[][] windowsOf(CalibrationSet calib, int partition, int perTask) {
        int from = partition * perTask, to = Math.min(calib.size(), from + perTask);
        int[][] out = new int[to - from][];
        for (int i = from; i < to; i++) out[i - from] = calib.windows().get(i);
        return out;
    }

    /**
     * Block {@code block}'s store rows, made by one executor task from the work area: the quantized layers
     * beside the block's full-precision norms and biases (or OmniQuant's folded rows), so the block's tensors
     * go from executor to Parquet without passing through the driver.
     */
    static org.apache.spark.api.java.JavaRDD<org.apache.spark.sql.Row> blockRows(JavaSparkContext sc, TaskDevices devices, ModelRef model, int block,
                                                                              boolean folded, BlockFiles files, HadoopConf conf,
                                                                              List<String> linears) {
        org.apache.spark.api.java.JavaRDD<Integer> task = sc.parallelize(List.of(block), 1);
        // rows already in the work area need no GPU: the commit then runs beside the next block's task on it
        return (folded ? task : devices.tasks(task)).flatMap(b -> {
            List<TensorRecord> rows;
            if (folded) {
                rows = files.readRows(conf.get(), b);
            } else {
                DecoderBlock fp = ExecutorBlocks.block(model, b, devices.backend(), conf.get());
                Map<String, io.blockquant.algo.StoredWeight> layers = files.readLayers(conf.get(), b, linears);
                rows = io.blockquant.store.BlockRecords.of(b,
                        new io.blockquant.algo.CalibratedBlock(BlockWork.withWeights(fp, BlockWork.dequantized(layers)), layers));
            }
            List<org.apache.spark.sql.Row> out = new ArrayList<>(rows.size());
            for (TensorRecord t : rows) out.add(io.blockquant.store.StoreLayout.toRow(t));
            return out.iterator();
        });
    }

    /** One value of block -1: rows {@code [from, from + rows)} of a checkpoint tensor outside the blocks. */
    public record ModelPart(String name, String dtype, long[] shape, int part, long from, long rows) implements Serializable {}

    /**
     * Every tensor outside the blocks (embeddings, positions, final norm, head) as block -1, in the checkpoint's
     * dtype and split into parts of at most {@link TensorRecord#PART_BYTES}: the driver plans from the shards'
     * headers, executor tasks read the rows and write them (a Llama-3-8B embedding is 1 GB in bf16).
     */
    static void commitModelTensors(SparkSession spark, StoreWriter store, String model, ModelSpec spec, Configuration hadoop) {
        List<ModelPart> parts = new ArrayList<>();
        try (Checkpoint ckpt = Checkpoint.open(new Path(model), hadoop)) {
            ModelLoader loader = ModelLoader.forNames(ckpt, spec);
            for (String name : new TreeSet<>(ckpt.tensorNames())) {
                if (loader.isBlockTensor(name)) continue;
                var e = ckpt.entry(name);
                String dtype = switch (e.dtype()) {
                    case F32 -> TensorRecord.FLOAT32;
                    case BF16 -> TensorRecord.BFLOAT16;
                    case F16 -> TensorRecord.FLOAT16;
                    default -> throw new ModelFormatException(ckpt.dir() + ": tensor '" + name + "' has dtype " + e.dtype()
                            + ", expected F32, F16 or BF16");
                };
                long rows = e.shape().length == 0 ? 1 : e.shape()[0];
                long perPart = TensorRecord.rowsPerPart(e.shape(), dtype);
                for (long from = 0, k = 0; from < rows || (rows == 0 && k == 0); from += perPart, k++) {
                    parts.add(new ModelPart(name, dtype, e.shape(), (int) k, from, Math.min(perPart, rows - from)));
                }
            }
        }
        HadoopConf conf = new HadoopConf(hadoop);
        JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        // one task per part: a task holds one value of at most PART_BYTES
        store.commitRows(TensorRecord.MODEL_BLOCK, sc.parallelize(parts, Math.max(1, parts.size())).mapPartitions(it -> {
            List<org.apache.spark.sql.Row> rows = new ArrayList<>();
            try (Checkpoint ckpt = Checkpoint.open(new Path(model), conf.get())) {
                while (it.hasNext()) {
                    ModelPart p = it.next();
                    byte[] data = ckpt.readRawRows(p.name(), p.from(), p.rows());
                    rows.add(io.blockquant.store.StoreLayout.toRow(TensorRecord.slice(TensorRecord.MODEL_BLOCK, p.name(), "weight",
                            p.dtype(), data, p.part(), p.shape())));
                }
            }
            return rows.iterator();
        }), null);
    }
}
