package io.blockquant.schedule;

import io.blockquant.tensor.TensorBackend;
import java.io.Serializable;
import java.util.List;
import org.apache.hadoop.conf.Configuration;

/**
 * Where a quantize run's block tasks execute: Spark's executors ({@link SparkBlockExecutor}) or this JVM
 * ({@link InProcessBlockExecutor}, for tests). The driver loop ({@link BlockLoop}) and the modes' steps say
 * <em>what</em> runs per item (a calibration partition, a layer, a block); this says where, on which tensor
 * backend, and with which Hadoop configuration, so the same steps run on either.
 */
public interface BlockExecutor {

    /** One task's body: an item, computed on the backend bound for the task's block, with the task's Hadoop configuration. */
    @FunctionalInterface
    interface Task<T, R> extends Serializable {
        R run(T item, TensorBackend backend, Configuration conf) throws Exception;
    }

    /** A value every task reads (a Spark broadcast on a cluster): the calibration windows. */
    interface Shared<T> extends Serializable {
        T value();

        /** Frees it where the tasks run (driver side). */
        void release();
    }

    /**
     * Runs {@code task} on every item, a task each, for block {@code block} (-1: the embedding; a task of a
     * block holds one GPU where the cluster has GPUs) and returns the results in item order.
     */
    <T, R> List<R> map(List<T> items, int block, Task<T, R> task);

    /**
     * As {@link #map}, each task preferring the executor that ran block {@code near}'s task, which left there what
     * this one reads (sequential mode: the next block's inputs on its GPU, {@link KeptInputs}); another executor takes
     * it when that one stays busy past Spark's locality wait. Without such a task, as {@link #map}.
     */
    default <T, R> List<R> mapNear(List<T> items, int block, int near, Task<T, R> task) {
        return map(items, block, task);
    }

    /** How many tasks run at once: a Hessian's partial sums and parallel mode's blocks are spread over that many. */
    int slots();

    /** The driver's Hadoop configuration (work-area files, the store). */
    Configuration conf();

    <T extends Serializable> Shared<T> share(T value);

    /** True when block tasks hold a GPU each. */
    boolean usesGpus();

    /** True when block tasks compute on GPUs: each holds one, or local mode computes on this host's. */
    boolean computesOnGpus();

    /** Where every block task ran so far (executor, pid, GPU), for the run's summary. */
    List<TaskDevices.Placement> placements();

    /** Names the work the calling thread submits next, so {@link #cancelAll} can stop it (parallel mode's threads). */
    default void describe(String work) {}

    /** Stops whatever the threads that called {@link #describe} still run (a block failed: the run ends). */
    default void cancelAll() {}
}
