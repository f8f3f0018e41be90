package io.blockquant.eval;

import io.blockquant.model.EmbeddingRows;

import io.blockquant.algo.RtnQuantizer;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.quant.FakeQuantRecipe;
import io.blockquant.schedule.ActivationFiles;
import io.blockquant.spark.HadoopConf;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.io.PrintStream;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.IntStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.spark.SparkStatusTracker;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

/**
 * Perplexity on Spark, block by block, so that no JVM holds more than one block of the model (nor the
 * embedding or head whole): the windows are split into partitions of a few windows each; one job embeds
 * every partition (the token rows it needs, read by rows), one job per block runs that block over every
 * partition's activations, and a last job applies the final norm and the head in chunks of vocabulary rows
 * and returns each partition's NLL sum. Activations move between jobs as files in a work folder that the
 * driver removes at the end. The partitions, and so every forward batch and the sums' order, are those
 * of a single pass over a whole model: the figures are the same to the last bit when the head is one chunk.
 */
public final class PerplexityJob {

    /** Head rows per chunk are chosen to keep a chunk near this many bytes of float32. */
    static final long HEAD_CHUNK_BYTES = 64L << 20;

    /**
     * What to score and how.
     *
     * @param recipe  the fake quantization applied to every block's linears (weights and/or activations)
     * @param workDir where the run's work folder ({@code eval-<uuid>}) is made; null: the source's own place
     *                (a store's {@code _work}), else {@link WorkFolder#defaultParent}
     */
    public record Request(ModelSource model, FakeQuantRecipe recipe, int windowsPerTask, String workDir) implements Serializable {
        /** A checkpoint's model: config, tokenizer and weights in {@code modelDir}. */
        public Request(String modelDir, FakeQuantRecipe recipe, int windowsPerTask) {
            this(new CheckpointSource(modelDir), recipe, windowsPerTask, null);
        }
    }

    private PerplexityJob() {}

    /** {@code progress}: one line per pass (null: quiet); {@code label} starts each line. */
    public static NllSum run(SparkSession spark, Request request, List<int[]> windows, String label, PrintStream progress) {
        return run(spark, request, windows, label, progress, HEAD_CHUNK_BYTES);
    }

    /** As above, the head read {@code headChunkBytes} (of float32) at a time. */
    static NllSum run(SparkSession spark, Request request, List<int[]> windows, String label, PrintStream progress,
                      long headChunkBytes) {
        if (windows.isEmpty()) throw new IllegalArgumentException("no window to score");
        JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        Configuration hadoop = sc.hadoopConfiguration();
        ModelSpec spec = ModelSpecReader.read(new Path(request.model().modelDir()), hadoop);
        String parent = request.workDir() != null ? request.workDir() : request.model().workParent();
        WorkFolder work = WorkFolder.create(hadoop, parent != null ? new Path(parent) : WorkFolder.defaultParent(sc.sc()));
        String tag = work.path().getName();
        sc.sc().addJobTag(tag);
        boolean done = false;
        try {
            Passes passes = new Passes(request, spec, new ActivationFiles(work.path().toString()), new HadoopConf(hadoop),
                    tag, windows.get(0).length, headChunkBytes, io.blockquant.schedule.TaskDevices.of(sc));
            NllSum sum = passes.run(sc, windows, new Progress(label, spec.numLayers(), windows.size(), progress));
            done = true;
            return sum;
        } catch (IOException e) {
            throw new UncheckedIOException(work.path() + ": " + e.getMessage(), e);
        } finally {
            sc.sc().removeJobTag(tag);
            if (!done) {
                try {
                    awaitTasks(sc.sc().statusTracker(), tag);
                } catch (RuntimeException | LinkageError e) {
                    // the pass's own failure is the one to report
                    System.err.println("warning: cannot wait for the failed pass's other tasks: " + e);
                }
            }
            try {
                work.remove(hadoop);
            } catch (IOException e) {
                System.err.println("warning: cannot delete eval's work folder " + work.path() + ": " + e.getMessage());
            }
        }
    }

    /**
     * The jobs of one run; what their tasks capture (nothing of the model's size).
     *
     * @param run  names this run in the executors' caches
     * @param seq  tokens per window
     */
    private record Passes(Request request, ModelSpec spec, ActivationFiles acts, HadoopConf conf, String run, int seq,
                          long headChunkBytes, io.blockquant.schedule.TaskDevices devices) implements Serializable {

        ModelSource source() {
            return request.model();
        }

        NllSum run(JavaSparkContext sc, List<int[]> windows, Progress progress) throws IOException {
            int perTask = Math.max(1, request.windowsPerTask());
            int tasks = (windows.size() + perTask - 1) / perTask;
            // Spark's slicing of a collection (partition i: windows [i·n/tasks, (i+1)·n/tasks)), as every eval before
            // every pass computes: on a GPU cluster each task holds a GPU, as block tasks do
            JavaRDD<int[]> batches = devices.tasks(sc.parallelize(windows, tasks));
            JavaRDD<Integer> partitions = devices.tasks(sc.parallelize(IntStream.range(0, tasks).boxed().toList(), tasks));
            Configuration hadoop = sc.hadoopConfiguration();

            batches.foreachPartition(it -> {
                int[][] batch = drain(it);
                float[] h = embed(batch);
                TaskContext.get().killTaskIfInterrupted();
                acts.write(conf.get(), 0, TaskContext.getPartitionId(), h, batch.length * seq, h.length / (batch.length * seq));
            });
            progress.embedded();
            for (int b = 0; b < spec.numLayers(); b++) {
                int block = b;
                partitions.foreach(p -> forward(block, p));
                acts.deleteBlock(hadoop, block);
                progress.block(block);
            }
            List<NllSum> sums = batches.mapPartitions(it -> List.of(score(drain(it))).iterator()).collect();
            NllSum total = sums.stream().reduce(NllSum::plus).orElseThrow(); // partition order: the same sum every run
            progress.scored(total.windows());
            return total;
        }

        /** A partition's block-0 inputs: its tokens' embedding rows (OPT: plus positions). */
        private float[] embed(int[][] batch) {
            TensorBackend be = devices.backend();
            ExecutorParts.dropBlock();
            CausalLm stem = ExecutorParts.stem(run, () -> source().stem(spec, be, conf.get()));
            int[] ids = new int[batch.length * seq];
            for (int w = 0; w < batch.length; w++) System.arraycopy(batch[w], 0, ids, w * seq, seq);
            float[] rows = source().withTable(spec, ModelSource.Table.EMBEDDING, conf.get(), t -> EmbeddingRows.gather(t, ids));
            return be.scratchValue(() -> stem.embedRows(be.fromFloats(rows, ids.length, rows.length / ids.length),
                    batch.length, seq).toFloats());
        }

        /** Block {@code block} (fake-quantized by the recipe) over partition {@code p}'s activations. */
        private void forward(int block, int p) throws IOException {
            TensorBackend be = devices.backend();
            DecoderBlock layer = ExecutorParts.block(run + "|" + block,
                    () -> RtnQuantizer.apply(source().block(spec, block, be, conf.get()), request.recipe()));
            int[] shape = new int[2];
            float[] x = acts.read(conf.get(), block, p, shape);
            float[] y = be.scratchValue(() -> layer.forward(be.fromFloats(x, shape[0], shape[1]), shape[0] / seq, seq).toFloats());
            TaskContext.get().killTaskIfInterrupted();
            acts.write(conf.get(), block + 1, p, y, shape[0], shape[1]);
        }

        /** A partition's NLL: final norm, then the head chunk by chunk. */
        private NllSum score(int[][] batch) throws IOException {
            TensorBackend be = devices.backend();
            ExecutorParts.dropBlock();
            CausalLm stem = ExecutorParts.stem(run, () -> source().stem(spec, be, conf.get()));
            int[] shape = new int[2];
            float[] h = acts.read(conf.get(), spec.numLayers(), TaskContext.getPartitionId(), shape);
            int[] targets = WindowScorer.targets(batch);
            HeadScores s = be.scratchValue(() -> {
                Tensor x = stem.headInput(be.fromFloats(h, shape[0], shape[1]));
                return source().withTable(spec, ModelSource.Table.HEAD, conf.get(),
                        head -> HeadScores.score(x, head, head.rowsPerRead(headChunkBytes), targets));
            });
            return WindowScorer.nll(s.lse(), s.picked(), batch.length, seq);
        }

        private static int[][] drain(java.util.Iterator<int[]> it) {
            List<int[]> batch = new ArrayList<>();
            it.forEachRemaining(batch::add);
            return batch.toArray(new int[0][]);
        }
    }

    /**
     * After a failed pass, the other tasks of its job may still be running (Spark does not stop a task's
     * code): waits until they end, so none writes into the work folder after it is removed.
     */
    private static void awaitTasks(SparkStatusTracker status, String tag) {
        long deadline = System.nanoTime() + 120_000_000_000L;
        while (System.nanoTime() < deadline) {
            int active = 0;
            for (int job : status.getJobIdsForTag(tag)) {
                var info = status.getJobInfo(job);
                if (info.isEmpty()) continue;
                for (int stage : info.get().stageIds()) {
                    var s = status.getStageInfo(stage);
                    if (s.isDefined()) active += s.get().numActiveTasks();
                }
            }
            if (active == 0) return;
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** One line per pass on {@code out}: which pass, its seconds, the time so far and an estimate of the rest. */
    private static final class Progress {
        private final String label;
        private final int blocks;
        private final int windows;
        private final PrintStream out;
        private final long start = System.nanoTime();
        private long last = start;

        Progress(String label, int blocks, int windows, PrintStream out) {
            this.label = label;
            this.blocks = blocks;
            this.windows = windows;
            this.out = out;
        }

        void embedded() {
            line("embedded %d windows", windows);
        }

        void block(int b) {
            line("block %d/%d", b + 1, blocks);
        }

        void scored(int scored) {
            line("head, %d/%d windows scored", scored, windows);
        }

        private void line(String what, Object... args) {
            long now = System.nanoTime();
            double pass = (now - last) / 1e9, elapsed = (now - start) / 1e9;
            last = now;
            if (out == null) return;
            synchronized (out) {
                out.printf(Locale.ROOT, "%s: %s, %.1f s (%.1f s elapsed)%n", label, String.format(Locale.ROOT, what, args), pass, elapsed);
                out.flush();
            }
        }
    }
}
