package io.blockquant.schedule;

import io.blockquant.tensor.Backends;
import io.blockquant.tensor.TensorBackend;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.spark.SparkEnv;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.resource.ResourceInformation;
import org.apache.spark.resource.ResourceProfile;
import org.apache.spark.resource.ResourceProfileBuilder;
import org.apache.spark.resource.TaskResourceRequests;
import org.apache.spark.util.CollectionAccumulator;

/**
 * Block tasks and the GPUs Spark gives them. When the executors offer GPUs
 * ({@code spark.executor.resource.gpu.amount} &gt; 0 on a cluster master), the RDDs of block tasks carry a
 * task resource profile asking for one GPU per task, so no two block tasks share a GPU; other jobs (the
 * store's Parquet writes) keep the default profile and hold no GPU. Under {@code local[...]} there are no
 * GPUs and block tasks run on the CPU. Inside a task, {@link #bind} hands the GPU address Spark assigned to
 * the tensor backend and records where the task ran, for the job's summary.
 */
public final class TaskDevices implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Where one block task ran: executor id, that JVM's process id, its GPU address ({@code null}: none). */
    public record Placement(int block, String executor, long pid, String gpu) implements Serializable {}

    /** Filled by successful task attempts only: a failed or killed attempt adds nothing. */
    private final CollectionAccumulator<Placement> placements;
    private final transient ResourceProfile profile;

    private TaskDevices(CollectionAccumulator<Placement> placements, ResourceProfile profile) {
        this.placements = placements;
        this.profile = profile;
    }

    public static TaskDevices of(JavaSparkContext sc) {
        CollectionAccumulator<Placement> acc = sc.sc().collectionAccumulator("block task placements");
        boolean gpus = !sc.isLocal() && sc.getConf().getDouble("spark.executor.resource.gpu.amount", 0) > 0;
        ResourceProfile p = null;
        if (gpus) {
            // task resources only (executors as configured): Spark supports this with dynamic allocation off
            TaskResourceRequests task = new TaskResourceRequests()
                    .cpus(sc.getConf().getInt("spark.task.cpus", 1))
                    .resource("gpu", 1.0);
            p = new ResourceProfileBuilder().require(task).build();
        }
        return new TaskDevices(acc, p);
    }

    /** True when block tasks ask Spark for a GPU each. */
    public boolean usesGpus() {
        return profile != null;
    }

    /** {@code rdd} with one GPU per task when the cluster has GPUs (driver side). */
    public <T> JavaRDD<T> tasks(JavaRDD<T> rdd) {
        return profile == null ? rdd : rdd.withResources(profile);
    }

    /**
     * Inside a task of block {@code block} (-1: the embedding): binds {@code backend} to the task's GPU,
     * records the placement and returns the backend.
     */
    public TensorBackend bind(int block, TensorBackend backend) {
        TaskContext task = TaskContext.get();
        String gpu = null;
        if (task != null) {
            Map<String, ResourceInformation> res = task.resourcesJMap();
            ResourceInformation info = res.get("gpu");
            if (info != null && info.addresses().length > 0) gpu = info.addresses()[0];
        }
        FaultInjection.inBlockTask(block);
        // -Dblockquant.backend=cuda (spark.executor.extraJavaOptions) computes on the CUDA backend of this GPU
        TensorBackend chosen = Backends.cudaSelected() ? Backends.forTask(gpu) : backend;
        if (gpu != null) chosen.bindDevice(gpu);
        // ND4J keeps each thread's scratch workspaces for reuse: at real widths that is gigabytes off the heap
        // per task thread, so a task gives them back when it ends
        if (task != null && chosen instanceof io.blockquant.tensor.Nd4jBackend) {
            task.addTaskCompletionListener(io.blockquant.tensor.Nd4jBackend::releaseThreadScratch);
        }
        String executor = SparkEnv.get() == null ? "driver" : SparkEnv.get().executorId();
        placements.add(new Placement(block, executor, ProcessHandle.current().pid(), gpu));
        return chosen;
    }

    /** The placements of every successful block task so far (driver side). */
    public List<Placement> placements() {
        return new ArrayList<>(placements.value());
    }
}
