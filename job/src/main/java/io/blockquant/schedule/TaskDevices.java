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
 * store's Parquet writes) keep the default profile and hold no GPU. Under {@code local[...]} no task is
 * assigned a GPU; {@code auto} then computes on GPU 0 when CUDA loads. Inside a task, {@link #bind} chooses
 * the backend ({@link Backends#choose}, from {@code spark.blockquant.backend}) on the GPU Spark assigned and
 * records where the task ran, for the job's summary.
 */
public final class TaskDevices implements Serializable {
    private static final long serialVersionUID = 1L;

    /**
     * Where one block task ran: executor id, its host (as its block manager registered it), that JVM's process id,
     * its GPU address ({@code null}: none).
     */
    public record Placement(int block, String executor, String host, long pid, String gpu) implements Serializable {

        /** Spark's name for a task's preferred executor ({@code TaskLocation}: executor_HOST_ID). */
        String taskLocation() {
            return "executor_" + host + "_" + executor;
        }
    }

    /** Filled by successful task attempts only: a failed or killed attempt adds nothing. */
    private final CollectionAccumulator<Placement> placements;
    private final transient ResourceProfile profile;
    private final Backends.Choice choice;
    /** Local mode: no task is assigned a GPU, so auto may probe for one. */
    private final boolean local;
    /** Block tasks' float32 products through TF32 tensor cores ({@link #TF32_KEY}). */
    private final boolean tf32;

    /**
     * The Spark key for TF32 products in block tasks on GPUs (default true): calibration's forward passes and Hessian
     * products round their inputs to TF32's 10 mantissa bits, as many as the half-precision activations the GPTQ
     * reference forms its Hessians from, and accumulate in float32. {@code eval} computes in exact float32 either way.
     */
    public static final String TF32_KEY = "spark.blockquant.tf32";

    private TaskDevices(CollectionAccumulator<Placement> placements, ResourceProfile profile, Backends.Choice choice, boolean local,
                        boolean tf32) {
        this.placements = placements;
        this.profile = profile;
        this.choice = choice;
        this.local = local;
        this.tf32 = tf32;
    }

    /** The backend choice of a Spark application: {@code spark.blockquant.backend}, else {@code -Dblockquant.backend}. */
    public static Backends.Choice choice(org.apache.spark.SparkConf conf) {
        return conf.contains(Backends.SPARK_KEY)
                ? Backends.Choice.parse(conf.get(Backends.SPARK_KEY), Backends.SPARK_KEY)
                : Backends.Choice.fromProperty();
    }

    /**
     * The devices of {@code sc}'s block tasks. In local mode the backend is chosen here, once, so a CUDA
     * backend that cannot load stops the job before any task (one line naming host, GPU and cause).
     */
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
        TaskDevices d = new TaskDevices(acc, p, choice(sc.getConf()), sc.isLocal(), sc.getConf().getBoolean(TF32_KEY, true));
        if (d.local) d.driverBackend();
        return d;
    }

    /** The backend of work on the driver (checks before any task): CUDA when chosen or when auto finds it. */
    public TensorBackend driverBackend() {
        return Backends.choose(choice, null, true);
    }

    /** Whether block tasks compute on CUDA in this application's local mode (driver side, for its summary). */
    public String describe() {
        return "backend " + choice.name().toLowerCase(java.util.Locale.ROOT)
                + (local ? " -> " + driverBackend().name() : " (per task: cuda on its GPU, else cpu)");
    }

    /** True when block tasks ask Spark for a GPU each. */
    public boolean usesGpus() {
        return profile != null;
    }

    /** True when block tasks compute on GPUs: each asks Spark for one, or local mode's choice is CUDA (driver side). */
    public boolean computesOnGpus() {
        return usesGpus() || local && Backends.choosesCuda(choice, null, true);
    }

    /** {@code rdd} with one GPU per task when the cluster has GPUs (driver side). */
    public <T> JavaRDD<T> tasks(JavaRDD<T> rdd) {
        return profile == null ? rdd : rdd.withResources(profile);
    }

    /** The GPU address Spark assigned to the running task, null when none (or outside a task). */
    static String taskGpu() {
        TaskContext task = TaskContext.get();
        if (task == null) return null;
        Map<String, ResourceInformation> res = task.resourcesJMap();
        ResourceInformation info = res.get("gpu");
        return info != null && info.addresses().length > 0 ? info.addresses()[0] : null;
    }

    /**
     * Inside any task that computes (block tasks, eval passes, checkpoint checks): the chosen backend on the
     * task's GPU, bound to it.
     */
    public TensorBackend backend() {
        String gpu = taskGpu();
        TensorBackend chosen = Backends.choose(choice, gpu, local);
        if (gpu != null) chosen.bindDevice(gpu);
        // scratch is kept across these tasks (eval's passes run hundreds of small ones: giving ND4J's workspaces
        // back after each made a kjv.test eval about 2.7 times slower); block tasks give it back in bind
        return chosen;
    }

    /**
     * Inside a task of block {@code block} (-1: the embedding): the chosen backend bound to the task's GPU
     * ({@link #backend}); records the placement.
     */
    public TensorBackend bind(int block) {
        String gpu = taskGpu();
        FaultInjection.inBlockTask(block);
        TensorBackend chosen = backend();
        chosen.useTf32(tf32); // this thread's handles: back to exact float32 when the task ends and they are pooled
        // ND4J keeps each thread's scratch workspaces for reuse: at real widths that is gigabytes off the heap per
        // task thread, so a block task gives them back when it ends (through the interface: naming Nd4jBackend
        // here would load ND4J's classes on a CUDA executor)
        TaskContext task = TaskContext.get();
        if (task != null) task.addTaskCompletionListener((org.apache.spark.util.TaskCompletionListener) t -> chosen.endTask());
        SparkEnv env = SparkEnv.get();
        String executor = env == null ? "driver" : env.executorId();
        String host = env == null || env.blockManager() == null ? "localhost" : env.blockManager().blockManagerId().host();
        placements.add(new Placement(block, executor, host, ProcessHandle.current().pid(), gpu));
        return chosen;
    }

    /** The placements of every successful block task so far (driver side). */
    public List<Placement> placements() {
        return new ArrayList<>(placements.value());
    }
}
