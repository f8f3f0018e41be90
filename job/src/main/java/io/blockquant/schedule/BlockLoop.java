package io.blockquant.schedule;

import io.blockquant.schedule.QuantizeJob.BlockSummary;
import io.blockquant.store.LayerError;
import java.io.PrintStream;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletionService;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorCompletionService;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * The one per-block driver loop of every quantize run: calibrate each block still to do, commit it, log it. The
 * modes differ only in their {@link Step} and in how many blocks may calibrate at once: sequential mode one (block
 * i needs the quantized outputs of block i-1), parallel mode as many as the executor has slots (each block on its
 * captured full-precision inputs). Blocks are committed in the order they finish, so a killed run keeps every
 * finished block and {@code --resume} skips exactly those.
 */
public final class BlockLoop {

    private BlockLoop() {}

    /**
     * What calibrating one block produced: its error sums, the calibrator's loss per layer (Hessian methods), the
     * calibration tokens of its Hessians (0 without) and the seconds it took.
     */
    public record Outcome(int block, BlockStats stats, Map<String, Double> losses, long tokens, double seconds)
            implements Serializable {}

    /** One block's calibration (its tasks run through a {@link BlockExecutor}). */
    @FunctionalInterface
    interface Step {
        Outcome calibrate(int block) throws Exception;
    }

    /** Commits a calibrated block to the store; {@code errors}: its rows of layer errors. */
    @FunctionalInterface
    interface Commit {
        void commit(Outcome outcome, List<LayerError> errors) throws Exception;
    }

    /**
     * Runs {@code step} on every block of {@code todo}, at most {@code atOnce} at a time, and {@code commit} on each as
     * it finishes, in that order, one commit at a time on a committer thread: a block's commit (a Spark job writing its
     * rows into the store) overlaps the next block's calibration, which in sequential mode otherwise waits for it. When
     * one fails, {@code cancel} stops the others' work; a commit under way is finished first, so a failed run keeps
     * every block that was calibrated before the failure. Returns a summary per block of the model, those not in
     * {@code todo} marked skipped.
     */
    static List<BlockSummary> run(List<Integer> todo, int atOnce, BlockPlan plan, int blocks, long calibrationTokens,
                                  String method, Step step, Commit commit, Runnable cancel, PrintStream log) {
        List<BlockSummary> summaries = java.util.Collections.synchronizedList(new ArrayList<>());
        for (int b = 0; b < blocks; b++) {
            if (!todo.contains(b)) summaries.add(new BlockSummary(b, 0, Double.NaN, Map.of(), true));
        }
        // one block at a time runs on this thread (a backend's per-thread state, a CUDA stream, stays the caller's)
        ExecutorService pool = atOnce > 1 ? Executors.newFixedThreadPool(Math.min(atOnce, Math.max(1, todo.size()))) : null;
        ExecutorService committer = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "block commits");
            t.setDaemon(true);
            return t;
        });
        CompletionService<Outcome> finished = new ExecutorCompletionService<>(pool != null ? pool : Runnable::run);
        Iterator<Integer> next = todo.iterator();
        int running = 0;
        Future<?> committing = null;
        try {
            for (; running < atOnce && next.hasNext(); running++) submit(finished, step, next.next());
            while (running > 0) {
                Outcome o = finished.take().get();
                running--;
                if (committing != null) committing.get(); // the previous block's, which ran beside this one's calibration
                committing = committer.submit(() -> {
                    long t0 = System.nanoTime();
                    Map<String, Double> layerErrors = new LinkedHashMap<>();
                    commit.commit(o, errors(o.block(), plan, o.stats(), o.losses(), calibrationTokens, layerErrors));
                    double seconds = o.seconds() + (System.nanoTime() - t0) / 1e9;
                    BlockSummary summary = new BlockSummary(o.block(), seconds, o.stats().blockError(), layerErrors, false);
                    summaries.add(summary);
                    log.printf(Locale.ROOT, "block %d/%d done in %.1f s%s: relative output error %.4f (worst layer %s)%n",
                            o.block() + 1, blocks, seconds, o.tokens() > 0 ? ", " + method + " on " + o.tokens() + " tokens" : "",
                            o.stats().blockError(), summary.worstLayer());
                    return null;
                });
                if (next.hasNext()) {
                    submit(finished, step, next.next());
                    running++;
                }
            }
            if (committing != null) committing.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while calibrating blocks", e);
        } catch (ExecutionException e) {
            throw rethrow(e.getCause());
        } catch (Exception e) {
            throw rethrow(e);
        } finally {
            // a commit under way finishes first (its block was calibrated): its Spark job may share the job group
            // that cancel stops, the committer thread having inherited the caller's
            committer.shutdown();
            awaitQuietly(committer);
            if (running > 0) cancel.run();
            if (pool != null) pool.shutdownNow();
        }
        List<BlockSummary> out = new ArrayList<>(summaries);
        out.sort(java.util.Comparator.comparingInt(BlockSummary::block));
        return out;
    }

    private static void awaitQuietly(ExecutorService committer) {
        try {
            committer.awaitTermination(Long.MAX_VALUE, java.util.concurrent.TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void submit(CompletionService<Outcome> finished, Step step, int block) {
        finished.submit(() -> step.calibrate(block));
    }

    /**
     * A block's rows of layer errors: each linear's relative output error (and the calibrator's loss, from
     * {@code losses} by module), then the block output's; {@code summary} gets the linears' errors.
     */
    static List<LayerError> errors(int block, BlockPlan plan, BlockStats stats, Map<String, Double> losses,
                                   long calibrationTokens, Map<String, Double> summary) {
        List<LayerError> errors = new ArrayList<>();
        for (String module : plan.allLinears()) {
            double e = stats.layerError(module);
            summary.put(module, e);
            errors.add(new LayerError(block, module, e, losses.getOrDefault(module, Double.NaN), stats.layerTokens(module)));
        }
        errors.add(new LayerError(block, QuantizeJob.BLOCK_OUTPUT, stats.blockError(), Double.NaN, calibrationTokens));
        return errors;
    }

    /**
     * A task's failure as it was thrown, unchecked or not (Spark's exceptions are checked but undeclared): the
     * command line turns its cause chain into one line, so it must not be wrapped.
     */
    static RuntimeException rethrow(Throwable t) {
        throw BlockLoop.<RuntimeException>sneaky(t);
    }

    @SuppressWarnings("unchecked")
    private static <E extends Throwable> E sneaky(Throwable t) throws E {
        throw (E) t;
    }
}
