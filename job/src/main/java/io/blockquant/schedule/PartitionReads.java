package io.blockquant.schedule;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * A block's input partitions read ahead on a few threads, taken in partition order: one thread read a Llama-3-8B
 * block's 4 GiB of inputs at about 0.5 GB/s, longer than the pass that used them.
 */
final class PartitionReads implements AutoCloseable {

    private static final int READERS = 4;

    private final ExecutorService readers;
    private final CompletableFuture<float[]>[] reads;
    private final int[][] shapes;

    /** Starts reading partitions {@code from} .. {@code inputs.partitions() − 1}. */
    @SuppressWarnings("unchecked")
    PartitionReads(BlockStep.Inputs inputs, int from, String name) {
        int n = inputs.partitions();
        reads = new CompletableFuture[n];
        shapes = new int[n][2];
        readers = Executors.newFixedThreadPool(Math.max(1, Math.min(READERS, n - from)), r -> {
            Thread t = new Thread(r, name);
            t.setDaemon(true);
            return t;
        });
        for (int p = from; p < n; p++) {
            int part = p;
            reads[p] = CompletableFuture.supplyAsync(() -> {
                try {
                    return inputs.read(part, shapes[part]);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }, readers);
        }
    }

    /** Whether partition {@code p} is being read here (and not yet taken). */
    boolean has(int p) {
        return reads[p] != null;
    }

    /** Partition {@code p}'s values, its {rows, cols} into {@code shape}; a failed read rethrown as it was thrown. */
    float[] take(int p, int[] shape) throws IOException {
        try {
            float[] x = reads[p].join();
            shape[0] = shapes[p][0];
            shape[1] = shapes[p][1];
            return x;
        } catch (CompletionException e) {
            if (e.getCause() instanceof UncheckedIOException io) throw io.getCause();
            throw e;
        } finally {
            reads[p] = null;
        }
    }

    @Override
    public void close() {
        readers.shutdownNow();
    }
}
