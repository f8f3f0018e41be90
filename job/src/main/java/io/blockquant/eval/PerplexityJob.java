package io.blockquant.eval;

import io.blockquant.model.InMemoryWeights;
import io.blockquant.quant.FakeQuantRecipe;
import io.blockquant.spark.HadoopConf;
import io.blockquant.spark.ProgressListener;
import io.blockquant.tensor.Nd4jBackend;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

/**
 * Perplexity on Spark: the windows are spread over tasks (a few windows each, batched into one forward
 * pass), every executor loads the model once, and the per-task NLL sums are added on the driver.
 */
public final class PerplexityJob {

    /** What to score and how. */
    public record Request(String modelDir, FakeQuantRecipe recipe, int windowsPerTask,
                          org.apache.spark.broadcast.Broadcast<InMemoryWeights> weights) implements java.io.Serializable {
        /** A checkpoint's model: config, tokenizer and weights in {@code modelDir}. */
        public Request(String modelDir, FakeQuantRecipe recipe, int windowsPerTask) {
            this(modelDir, recipe, windowsPerTask, null);
        }
    }

    private PerplexityJob() {}

    public static NllSum run(SparkSession spark, Request request, List<int[]> windows, String label, PrintStream progress) {
        if (windows.isEmpty()) throw new IllegalArgumentException("no window to score");
        JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        int perTask = Math.max(1, request.windowsPerTask());
        int tasks = (windows.size() + perTask - 1) / perTask;
        HadoopConf conf = new HadoopConf(sc.hadoopConfiguration());
        ProgressListener listener = progress == null ? null : new ProgressListener(label, windows.size(), perTask, progress);
        if (listener != null) sc.sc().addSparkListener(listener);
        try {
            return sc.parallelize(windows, tasks)
                    .mapPartitions((Iterator<int[]> it) -> {
                        List<int[]> batch = new ArrayList<>();
                        it.forEachRemaining(batch::add);
                        if (batch.isEmpty()) return List.of(NllSum.ZERO).iterator();
                        var model = ExecutorModels.get(request.modelDir(), request.recipe(), Nd4jBackend.INSTANCE, conf.get(),
                                request.weights() == null ? null : request.weights().value());
                        return List.of(WindowScorer.score(model, batch)).iterator();
                    })
                    .collect().stream().reduce(NllSum::plus).orElseThrow(); // partition order: the same sum every run
        } finally {
            if (listener != null) sc.sc().removeSparkListener(listener);
        }
    }
}
