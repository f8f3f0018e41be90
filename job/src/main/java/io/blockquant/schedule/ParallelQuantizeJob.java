package io.blockquant.schedule;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.ModelSpec;
import io.blockquant.schedule.QuantizeJob.Summary;
import io.blockquant.store.StoreWriter;
import io.blockquant.tensor.Tensor;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.Locale;
import java.util.stream.IntStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * {@code quantize --mode parallel}: every block calibrated at once, each on the outputs of the
 * <em>full-precision</em> prefix (so block i does not wait for blocks 0..i-1; the price is that a block never
 * sees the error its quantized prefix makes).
 *
 * <p>The inputs come from a capture pass, not from each task recomputing its prefix: recomputing would cost
 * block i a forward pass through i blocks on every window (L²/2 block passes in all, and every earlier block's
 * weights loaded in the task), while capturing runs the prefix once, block by block (L passes, one Spark job
 * each, as sequential mode's output passes), into {@code STORE/_work/fp} as {@link ActivationFiles}. The cost
 * is disk: every uncommitted block's inputs stay until the store is finished (windows × seqlen × hidden
 * float32 per block: 64 MiB for tiny-llama at 128 × 512). OmniQuant's targets are the next block's captured
 * inputs.
 *
 * <p>Where block tasks compute on GPUs (GPTQ, RTN), there is no capture pass: each executor runs the
 * full-precision blocks itself with the windows' hidden states kept on its GPU ({@link FullPrecisionWalk}), and
 * block b's task prefers the executor that ran block b − n (n at a time), whose walk stands n blocks behind: each
 * GPU forwards every block once and calibrates every n-th, and no activation is written (the capture's disk at
 * 70B, about 690 GB, is more than an eight-GPU machine's). OmniQuant keeps the capture, whose next block's inputs
 * are its targets.
 *
 * <p>Then one Spark job per block is submitted at once; its single task reads the block's inputs partition by
 * partition and does what sequential mode spreads over several jobs: GPTQ's Hessian of each true-sequential
 * group (earlier groups of the block already quantized), the column loops, and the block's errors against the
 * full-precision block on the same inputs (OmniQuant: trains on all windows). One job per block, not one job
 * of L tasks, because a job's results reach the driver only when all its tasks end: here the driver commits
 * each block as soon as its task is done, so a killed run keeps every finished block and {@code --resume}
 * skips exactly those, whatever order they finished in.
 */
public final class ParallelQuantizeJob {

    private ParallelQuantizeJob() {}

    static Summary run(QuantizeJob.Run run) {
        BlockExecutor executor = run.executor();
        StoreWriter store = run.store();
        ModelRef model = run.model();
        ActivationFiles fpActs = new ActivationFiles(store.workDir() + "/fp");
        BlockFiles files = new BlockFiles(store.workDir().toString());
        int blocks = model.spec().numLayers();
        List<Integer> committed = store.committedBlocks();
        List<Integer> todo = IntStream.range(0, blocks).filter(b -> !committed.contains(b)).boxed().toList();

        BlockExecutor.Shared<CalibrationSet> windows = executor.share(run.calib());
        // on GPUs (GPTQ, RTN) each executor walks the full-precision model itself, its inputs on its GPU: no capture
        boolean walk = (executor.computesOnGpus() || BlockTask.residentOnCpu)
                && !(run.settings().calibrator() instanceof BlockCalibrator.OnBlockTargets);
        try {
            if (!todo.isEmpty() && !walk) {
                long tokens = (long) run.calib().size() * run.calib().seqlen();
                checkWorkSpace(store.workDir(), run.hadoop(), tokens, model.spec(), todo.get(todo.size() - 1) + 1);
                // OmniQuant's targets of the last block to do are the inputs of the block after it
                int need = todo.get(todo.size() - 1) + (run.settings().calibrator() instanceof BlockCalibrator.OnBlockTargets ? 1 : 0);
                capture(executor, model, windows, run.parts(), run.settings(), fpActs, need, blocks, run.log());
            }
            int atOnce = Math.max(1, Math.min(todo.size(), executor.slots()));
            run.log().printf("calibrating %d blocks at once (%d at a time), each on its full-precision inputs%s%n", todo.size(), atOnce,
                    walk ? " (each executor runs the full-precision blocks itself, inputs on its GPU)" : "");
            // one task per block: it reads the block's inputs partition by partition and does all of the block's work
            List<Integer> parts = run.parts();
            BlockPlan plan = run.plan();
            QuantizeSettings s = run.settings();
            String omniParams = run.req().omniParams();
            int seq = run.calib().seqlen(), nsamples = run.calib().size();
            String walkKey = store.workDir().toString();
            int perTask = s.windowsPerTask();
            BlockLoop.Step step = block -> {
                executor.describe("calibrate block " + block);
                if (walk) {
                    // where block − n ran (n at a time): that executor's walk stands n blocks behind this one
                    int near = block >= atOnce ? block - atOnce : Integer.MIN_VALUE;
                    return executor.mapNear(List.of(block), block, near, (b, be, conf) -> {
                        Tensor[] x = FullPrecisionWalk.inputs(walkKey, model, windows.value(), parts, perTask, b, be, conf);
                        return BlockTask.calibrate(b, ExecutorBlocks.block(model, b, be, conf), fpActs, null, files, conf, parts, plan, s,
                                omniParams, seq, nsamples, blocks, x);
                    }).get(0);
                }
                return executor.map(List.of(block), block, (b, be, conf) -> BlockTask.calibrate(
                        b, ExecutorBlocks.block(model, b, be, conf), fpActs, null, files, conf, parts, plan, s, omniParams, seq, nsamples,
                        blocks, null)).get(0);
            };
            return run.finish(run.loop(todo, atOnce, files, true, step, b -> { }));
        } catch (IOException e) {
            throw new UncheckedIOException(store.workDir() + ": " + e.getMessage(), e);
        } finally {
            windows.release();
        }
    }

    /**
     * Parallel mode keeps every block's captured inputs until the store is finished: refused before the
     * capture when the work area's file system cannot hold them (a Llama-3-8B at 128 × 2048 needs 34 GB, a
     * Llama-2-70B 344 GB), naming what to change. Sequential mode needs two blocks' worth at a time.
     */
    static void checkWorkSpace(Path workDir, Configuration hadoop, long tokens, ModelSpec spec, int blocks) {
        long need = (long) blocks * tokens * spec.hiddenSize() * 4;
        try {
            org.apache.hadoop.fs.FileSystem fs = workDir.getFileSystem(hadoop);
            Path probe = workDir;
            while (probe != null && !fs.exists(probe)) probe = probe.getParent();
            long free = fs.getStatus(probe).getRemaining();
            if (free > 0 && free < need) {
                throw new IllegalStateException(String.format(java.util.Locale.ROOT,
                        "%s: parallel mode keeps the inputs of all %d blocks (%d tokens x hidden %d x 4 bytes each): "
                                + "%.1f GB of work space, but the file system has %.1f GB free; use --mode sequential "
                                + "(two blocks' inputs at a time), fewer --nsamples/--seqlen, or a store on a larger file system",
                        workDir, blocks, tokens, spec.hiddenSize(), need / 1e9, free / 1e9));
            }
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(workDir + ": cannot measure the free space (" + e.getMessage() + ")", e);
        }
    }

    /**
     * The full-precision inputs of blocks 0..{@code need} (index {@code blocks}: the last block's outputs),
     * from the first one not captured yet: a resumed run continues where the capture stopped.
     */
    private static void capture(BlockExecutor executor, ModelRef model, BlockExecutor.Shared<CalibrationSet> windows, List<Integer> parts,
                                QuantizeSettings s, ActivationFiles fpActs, int need, int blocks, PrintStream log) throws IOException {
        int from = 0;
        while (from <= need && fpActs.isComplete(executor.conf(), from)) from++;
        long t0 = System.nanoTime();
        for (int i = from; i <= need; i++) {
            if (i == 0) QuantizeJob.embed(executor, model, windows, parts, s.windowsPerTask(), fpActs);
            else QuantizeJob.fullPrecisionPass(executor, model, i - 1, parts, fpActs, windows.value().seqlen(), null);
        }
        if (from <= need) {
            log.printf(Locale.ROOT, "captured the full-precision inputs of blocks %d..%d of %d in %.1f s (%d tasks per pass)%n",
                    from + 1, Math.min(need, blocks - 1) + 1, blocks, (System.nanoTime() - t0) / 1e9, parts.size());
        }
    }
}
