package io.blockquant.schedule;

import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * The next block's inputs as the block task that computed them left them on its GPU. Sequential mode's next block
 * task, when it runs in the same executor JVM (always, on one GPU), takes them instead of reading the files back and
 * uploading them again (a Llama-3-8B's are 4 GiB a block). They are taken only when the files a reader would read
 * are exactly the ones written with them (the accepted attempt's, by the work area's marker); otherwise, and on any
 * other executor, the files are read. One block's worth is kept at a time, and let go of when a GPU allocation fails.
 */
final class KeptInputs {

    private static String key;
    private static List<Path> files;
    private static Tensor[] tensors;
    private static boolean releasedOnGpuShortage;

    private KeptInputs() {}

    /** Keeps {@code kept} (a tensor per partition) as block {@code block}'s inputs, written to {@code written}. */
    static synchronized void put(ActivationFiles acts, int block, List<Path> written, Tensor[] kept, TensorBackend be) {
        clear();
        if (!releasedOnGpuShortage && be.onDevice()) {
            io.blockquant.cuda.CudaBackend.onOutOfMemory(KeptInputs::clear); // a failed allocation's retry
            releasedOnGpuShortage = true;
        }
        key = acts.workDir() + "|" + block;
        files = List.copyOf(written);
        tensors = kept;
    }

    /** Block {@code block}'s inputs of partitions {@code parts} when they are kept here and current, else null; handed over. */
    static synchronized Tensor[] take(ActivationFiles acts, Configuration conf, int block, List<Integer> parts) throws IOException {
        if (tensors == null) return null;
        boolean current = key.equals(acts.workDir() + "|" + block) && files.equals(acts.resolve(conf, block, parts));
        if (!current) {
            clear();
            return null;
        }
        Tensor[] out = tensors;
        tensors = null;
        key = null;
        files = null;
        return out;
    }

    /** Lets go of what is kept. */
    static synchronized void clear() {
        if (tensors != null) {
            for (Tensor t : tensors) if (t != null) t.close();
        }
        tensors = null;
        key = null;
        files = null;
    }
}
