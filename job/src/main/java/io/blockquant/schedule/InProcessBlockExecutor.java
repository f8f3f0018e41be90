package io.blockquant.schedule;

import io.blockquant.tensor.TensorBackend;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.apache.hadoop.conf.Configuration;

/**
 * Block tasks in this JVM: {@code threads} at a time on one tensor backend, no serialization and no scheduler. The
 * same steps as on Spark, so a test ({@code InProcessBlockExecutorTest}) can check the driver loop against Spark's
 * results.
 */
public final class InProcessBlockExecutor implements BlockExecutor {
    private final TensorBackend backend;
    private final Configuration conf;
    private final int threads;

    public InProcessBlockExecutor(TensorBackend backend, Configuration conf, int threads) {
        if (threads < 1) throw new IllegalArgumentException("in-process executor: threads must be at least 1, got " + threads);
        this.backend = backend;
        this.conf = conf;
        this.threads = threads;
    }

    @Override
    public <T, R> List<R> map(List<T> items, int block, Task<T, R> task) {
        ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, Math.min(threads, items.size())));
        try {
            List<Future<R>> futures = new ArrayList<>();
            for (T item : items) futures.add(pool.submit(() -> task.run(item, backend, conf)));
            List<R> out = new ArrayList<>(items.size());
            for (Future<R> f : futures) out.add(f.get());
            return out;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted in a task of block " + block, e);
        } catch (ExecutionException e) {
            throw BlockLoop.rethrow(e.getCause());
        } finally {
            pool.shutdownNow();
        }
    }

    @Override
    public int slots() {
        return threads;
    }

    @Override
    public Configuration conf() {
        return conf;
    }

    @Override
    public <T extends Serializable> Shared<T> share(T value) {
        return new Shared<>() {
            @Override
            public T value() {
                return value;
            }

            @Override
            public void release() {}
        };
    }

    @Override
    public boolean usesGpus() {
        return false;
    }

    @Override
    public boolean computesOnGpus() {
        return backend.onDevice();
    }

    @Override
    public List<TaskDevices.Placement> placements() {
        return List.of();
    }
}
