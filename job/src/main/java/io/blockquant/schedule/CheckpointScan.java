package io.blockquant.schedule;

import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelFormatException;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.spark.HadoopConf;
import io.blockquant.tensor.TensorBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.stream.IntStream;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaSparkContext;

/**
 * Reads every weight the quantize job will use, once, before anything is written: a missing or mis-shaped
 * tensor, a NaN or Inf, or a shard cut short is reported before the store exists, not when the job reaches
 * the block that holds it hours later. One Spark task per block (and one for the embeddings, final norm
 * and head), each loading its part exactly as the job's executors will; the problems come back as values,
 * so one error lists them instead of a task failure per block.
 */
final class CheckpointScan {

    private CheckpointScan() {}

    /** Throws a {@link ModelFormatException} naming the first problem found (and how many more there are). */
    static void check(JavaSparkContext sc, TaskDevices devices, String modelDir, ModelSpec spec, HadoopConf conf) {
        // the index and every shard's header first, on the driver: one error, not one per task
        Checkpoint.open(new Path(modelDir), conf.get()).close();
        List<Integer> parts = IntStream.range(-1, spec.numLayers()).boxed().toList();
        // loading is the check: on the backend the job computes on (a GPU task on a GPU cluster), freed at once
        List<String> problems = new ArrayList<>(devices.tasks(sc.parallelize(parts, parts.size())).map(part -> {
            try (Checkpoint ckpt = Checkpoint.open(new Path(modelDir), conf.get())) {
                TensorBackend be = devices.backend();
                ModelLoader loader = new ModelLoader(ckpt, spec, be);
                return be.scratchValue(() -> {
                    if (part < 0) loader.checkStem();
                    else loader.block(part);
                    return (String) null;
                });
            } catch (ModelFormatException e) {
                return (part < 0 ? "embeddings/head: " : "block " + part + ": ") + e.getMessage();
            }
        }).collect());
        problems.removeIf(Objects::isNull);
        if (!problems.isEmpty()) {
            throw new ModelFormatException(problems.get(0)
                    + (problems.size() > 1 ? " (and " + (problems.size() - 1) + " more blocks with problems)" : ""));
        }
    }
}
