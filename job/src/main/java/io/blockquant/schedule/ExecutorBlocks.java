package io.blockquant.schedule;

import io.blockquant.model.Checkpoint;
import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
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

    /** The block a sequential run will ask for next, being read from the checkpoint onto the heap, or null. */
    private static Ahead ahead;

    private record Ahead(String key, java.util.concurrent.CompletableFuture<InMemoryWeights> weights) {}

    /**
     * The thread that reads ahead: blocking I/O of seconds, kept off the common fork-join pool that the training
     * step's parallel loops use.
     */
    private static final java.util.concurrent.ExecutorService READER = java.util.concurrent.Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "block read-ahead");
        t.setDaemon(true);
        return t;
    });

    /** Blocks built from weights read ahead, in this JVM (tests). */
    static int blocksFromReadAhead;

    private ExecutorBlocks() {}

    /**
     * Starts reading block {@code block}'s tensors onto the heap in the background, for a {@link #block} call that is
     * coming (sequential mode's next block, while this one calibrates: reading and converting a Llama-3-8B block's
     * bf16 weights took about a second of every block). Only for a backend on a device (and the tests' resident CPU
     * path), whose block then needs only the upload, and only while the heap has room for it twice over; otherwise
     * {@link #block} reads as always.
     */
    public static synchronized void readAhead(ModelRef model, int block, TensorBackend backend, Configuration conf) {
        if (!(backend.onDevice() || BlockTask.residentOnCpu) || block < 0 || block >= model.spec().numLayers()) return;
        String key = aheadKey(model, block);
        if (ahead != null && ahead.key.equals(key)) return;
        ahead = null;
        Runtime rt = Runtime.getRuntime();
        long free = rt.maxMemory() - (rt.totalMemory() - rt.freeMemory());
        ModelSpec m = model.spec();
        // a block's linears at most (a gated MLP's three matrices); norms and biases are noise beside them
        long params = (long) m.hiddenSize() * m.headDim() * (2L * m.numHeads() + 2L * m.numKvHeads()) + 3L * m.hiddenSize() * m.intermediateSize();
        if (free < 2 * params * Float.BYTES) return;
        Configuration c = new Configuration(conf);
        ahead = new Ahead(key, java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try (Checkpoint ckpt = Checkpoint.open(new Path(model.dir()), c)) {
                String prefix = new ModelLoader(ckpt, m, backend).blockPrefix(block);
                // under the names a loader of these weights alone looks for (a family may infer its prefix from the embedding)
                String as = new ModelLoader(new InMemoryWeights("names", java.util.Map.of(), java.util.Map.of()), m, backend).blockPrefix(block);
                java.util.Map<String, float[]> values = new java.util.HashMap<>();
                java.util.Map<String, long[]> shapes = new java.util.HashMap<>();
                for (String name : ckpt.tensorNames()) {
                    if (!name.startsWith(prefix)) continue;
                    long[] shape = ckpt.entry(name).shape();
                    String to = as + name.substring(prefix.length());
                    values.put(to, ckpt.readFloats(name, shape));
                    shapes.put(to, shape);
                }
                return new InMemoryWeights(model.dir(), values, shapes);
            }
        }, READER));
    }

    /** The weights read ahead for {@code key}, or null (none, another block's, or the read failed: the caller reads). */
    private static InMemoryWeights takeAhead(String key) {
        Ahead a = ahead;
        ahead = null;
        if (a == null || !a.key.equals(key)) return null;
        try {
            return a.weights.join();
        } catch (java.util.concurrent.CompletionException e) {
            return null; // the reading in the caller's thread says what is wrong, in its own words
        }
    }

    public static synchronized DecoderBlock block(ModelRef model, int block, TensorBackend backend, Configuration conf) {
        String key = heldKey(model, block, backend);
        if (!releasedOnGpuShortage && backend instanceof io.blockquant.cuda.CudaBackend) {
            io.blockquant.cuda.CudaBackend.onOutOfMemory(ExecutorBlocks::evict); // a failed allocation's retry
            releasedOnGpuShortage = true;
        }
        if (current == null || !current.key.equals(key)) {
            evict(); // the block before goes before this one is read: never two in memory
            current = new Held(key, read(model, block, backend, conf));
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

    /**
     * Runs {@code pass} on full-precision block {@code block} without keeping it (parallel mode's walk through the
     * blocks other executors calibrate): the held block when it is that one, else the block read for the pass (from
     * the weights read ahead when they are its) and closed after it, so a walk holds one block at a time.
     */
    static void once(ModelRef model, int block, TensorBackend backend, Configuration conf, java.util.function.Consumer<DecoderBlock> pass) {
        Held held = null;
        synchronized (ExecutorBlocks.class) {
            if (current != null && current.key.equals(heldKey(model, block, backend))) {
                held = current;
                held.tasks++; // not closed under the pass if another task evicts it
            }
        }
        if (held != null) {
            try {
                pass.accept(held.block);
            } finally {
                release(held);
            }
            return;
        }
        DecoderBlock b = read(model, block, backend, conf);
        try {
            pass.accept(b);
        } finally {
            b.tensors().values().forEach(Tensor::close);
        }
    }

    /** Block {@code block} from the weights read ahead when they are its, else from the checkpoint. */
    private static DecoderBlock read(ModelRef model, int block, TensorBackend backend, Configuration conf) {
        InMemoryWeights ahead;
        synchronized (ExecutorBlocks.class) {
            ahead = takeAhead(aheadKey(model, block));
            if (ahead != null) blocksFromReadAhead++;
        }
        return ahead != null ? new ModelLoader(ahead, model.spec(), backend).block(block)
                : (DecoderBlock) load(model, backend, conf, l -> l.block(block));
    }

    private static String aheadKey(ModelRef model, int block) {
        return model.dir() + "|" + block;
    }

    private static String heldKey(ModelRef model, int block, TensorBackend backend) {
        return aheadKey(model, block) + "|" + backend.name();
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
