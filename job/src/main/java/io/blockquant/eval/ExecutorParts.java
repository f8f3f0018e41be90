package io.blockquant.eval;

import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.Tensor;
import java.util.function.Supplier;
import org.apache.spark.TaskContext;

/**
 * What an executor JVM keeps between the tasks of an eval pass: the stem (norms, OPT positions: small) and
 * the block the current pass runs, so each is read once per executor and pass. One block at most: the
 * previous one is let go before the next is read, and the head pass lets go of the last. A block let go is
 * closed (on a GPU: its device memory freed) once the last task that took it has ended.
 */
final class ExecutorParts {

    private static String stemKey;
    private static CausalLm stem;
    private static Held block;

    /** The held block and how many running tasks use it. */
    private static final class Held {
        final String key;
        final DecoderBlock block;
        int tasks;
        boolean dropped;

        Held(String key, DecoderBlock block) {
            this.key = key;
            this.block = block;
        }
    }

    private ExecutorParts() {}

    static synchronized CausalLm stem(String key, Supplier<CausalLm> load) {
        if (!key.equals(stemKey)) {
            stem = null;
            stemKey = null;
            stem = load.get();
            stemKey = key;
        }
        return stem;
    }

    static synchronized DecoderBlock block(String key, Supplier<DecoderBlock> load) {
        if (block == null || !key.equals(block.key)) {
            dropBlock();
            block = new Held(key, load.get());
        }
        Held h = block;
        TaskContext task = TaskContext.get();
        if (task != null) { // eval runs in Spark tasks only; the count keeps a block open while one uses it
            h.tasks++;
            task.addTaskCompletionListener((org.apache.spark.util.TaskCompletionListener) t -> release(h));
        }
        return h.block;
    }

    static synchronized void dropBlock() {
        Held h = block;
        block = null;
        if (h == null) return;
        h.dropped = true;
        if (h.tasks == 0) close(h);
    }

    private static synchronized void release(Held h) {
        if (--h.tasks == 0 && h.dropped) close(h);
    }

    private static void close(Held h) {
        h.block.tensors().values().forEach(Tensor::close);
    }
}
