package io.blockquant.schedule;

import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelLoader;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.TensorBackend;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * Full-precision blocks (and the embedding stem) read from the checkpoint inside an executor JVM, kept for
 * the tasks that follow: every pass over a block's calibration inputs needs the same weights, and
 * an executor holds one block at a time.
 */
public final class ExecutorBlocks {

    /** One block per executor JVM: the one its tasks work on now (a Llama-2-70B block is 3.4 GB in float32). */
    private static final Map<String, Object> CACHE = new LinkedHashMap<>();

    private ExecutorBlocks() {}

    public static synchronized DecoderBlock block(ModelRef model, int block, TensorBackend backend, Configuration conf) {
        String key = model.dir() + "|" + block + "|" + backend.name();
        Object cached = CACHE.get(key);
        if (cached == null) {
            CACHE.clear(); // the block before goes before this one is read: never two in memory
            cached = load(model, backend, conf, l -> l.block(block));
            CACHE.put(key, cached);
        }
        return (DecoderBlock) cached;
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
