package io.blockquant.schedule;

import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelLoader;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.spark.TaskContext;

/**
 * Full-precision blocks (and the embedding stem) read from the checkpoint inside an executor JVM, kept for
 * the tasks that follow: every pass over a block's calibration inputs needs the same weights, and
 * an executor holds one block at a time.
 *
 * <p>A block's tensors are closed (on a GPU: its device memory freed at once, not at some garbage collection)
 * when it is evicted and the last Spark task that took it has ended; a block handed out outside a Spark task
 * (the in-process executor) is left to the garbage collector, since nothing says when its user is done.
 */
public final class ExecutorBlocks {

    /** The block an executor JVM holds, and the running tasks that use it. */
    private static final class Held {
        final String key;
        final DecoderBlock block;
        int tasks;
        boolean evicted;
        boolean outsideTasks;

        Held(String key, DecoderBlock block) {
            this.key = key;
            this.block = block;
        }
    }

    /** One block per executor JVM: the one its tasks work on now (a Llama-2-70B block is 3.4 GB in float32). */
    private static Held current;

    private static boolean releasedOnGpuShortage;

    private ExecutorBlocks() {}

    public static synchronized DecoderBlock block(ModelRef model, int block, TensorBackend backend, Configuration conf) {
        String key = model.dir() + "|" + block + "|" + backend.name();
        if (!releasedOnGpuShortage && backend instanceof io.blockquant.cuda.CudaBackend) {
            io.blockquant.cuda.CudaBackend.onOutOfMemory(ExecutorBlocks::evict); // a failed allocation's retry
            releasedOnGpuShortage = true;
        }
        if (current == null || !current.key.equals(key)) {
            evict(); // the block before goes before this one is read: never two in memory
            current = new Held(key, (DecoderBlock) load(model, backend, conf, l -> l.block(block)));
        }
        Held h = current;
        TaskContext task = TaskContext.get();
        if (task == null) {
            h.outsideTasks = true;
        } else {
            h.tasks++;
            task.addTaskCompletionListener((org.apache.spark.util.TaskCompletionListener) t -> release(h));
        }
        return h.block;
    }

    /** Lets go of the held block (closed now when no task uses it). */
    public static synchronized void evict() {
        Held h = current;
        current = null;
        if (h == null) return;
        h.evicted = true;
        if (h.tasks == 0) close(h);
    }

    private static synchronized void release(Held h) {
        if (--h.tasks == 0 && h.evicted) close(h);
    }

    private static void close(Held h) {
        if (!h.outsideTasks) h.block.tensors().values().forEach(Tensor::close);
    }

    /** The windows' hidden states entering block 0, reading only the embedding rows they use. */
    public static float[] embed(ModelRef model, int[][] windows, TensorBackend backend, Configuration conf) {
        return (float[]) load(model, backend, conf, l -> l.embed(windows).toFloats());
    }

    private static Object load(ModelRef model, TensorBackend backend, Configuration conf,
                               java.util.function.Function<ModelLoader, Object> what) {
        try (Checkpoint ckpt = Checkpoint.open(new Path(model.dir()), conf)) {
            return what.apply(new ModelLoader(ckpt, model.spec(), backend));
        }
    }
}
