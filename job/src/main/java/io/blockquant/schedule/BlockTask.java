package io.blockquant.schedule;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.CalibratedBlock;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.store.BlockRecords;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * One block calibrated whole inside one task: parallel mode's block task (on the full-precision prefix's outputs)
 * and sequential mode's where spreading a block over tasks buys nothing (block tasks on GPUs, or one slot): there
 * the inputs are the quantized prefix's outputs and the block's own outputs are written as the next block's inputs.
 * The task reads the inputs partition by partition (on a GPU it keeps them there for all the block's passes), and
 * does what sequential mode otherwise spreads over several jobs: GPTQ's Hessian of each true-sequential group (the
 * block's earlier groups already quantized), the column loops, and the block's errors against the full-precision
 * block on the same inputs (OmniQuant: trains on all windows); it leaves the calibrated block's rows in the work area.
 */
final class BlockTask {

    private BlockTask() {}

    /**
     * Tests: the CPU backend takes the device path (inputs kept across the block's passes and for the next block
     * task), so the CPU suite checks its bookkeeping against the path that reads files.
     */
    static volatile boolean residentOnCpu;

    /**
     * {@code next}: where the calibrated block's outputs go (the next block's inputs), null when nothing reads them;
     * {@code given}: the block's inputs already on its backend, a tensor per partition that the task then owns
     * ({@link FullPrecisionWalk}), or null to take them from {@code inputs} (or as the task before left them).
     */
    static BlockLoop.Outcome calibrate(int block, DecoderBlock fp, ActivationFiles inputs, ActivationFiles next, BlockFiles files,
                                       Configuration conf, List<Integer> parts, BlockPlan plan, QuantizeSettings s, String omniParams,
                                       int seq, int nsamples, int blocks, Tensor[] given) throws IOException {
        long t0 = System.nanoTime();
        CalibratedBlock calibrated;
        Map<String, Double> losses = Map.of();
        long tokens = 0;
        double solve = 0, sums = 0;
        BlockStats layerErrors = null;
        TensorBackend be = fp.linears().get(0).weight().backend();
        boolean resident = be.onDevice() || residentOnCpu || given != null;
        Tensor[] kept = given != null ? given : resident ? KeptInputs.take(inputs, conf, block, parts) : null;
        try (BlockStep.OnBackend in = new BlockStep.OnBackend(inputs.inputs(conf, block, parts), be, resident, kept)) {
            if (s.calibrator() instanceof BlockCalibrator.OnBlockTargets) {
                // inputs and targets both from the full-precision stream: block i's inputs, block i+1's inputs (the input
                // ranges taken from the inputs)
                calibrated = SequentialQuantizeJob.omniQuantBlock(fp, block, inputs, inputs, null, parts, conf, s, omniParams, seq, nsamples,
                        blocks);
            } else {
                BlockStep.Layers layers = BlockStep.layers(block, fp, s.calibrator(), plan, s, in, seq);
                calibrated = layers.block();
                losses = layers.losses();
                tokens = layers.tokens();
                solve = layers.calibrationSeconds();
                sums = layers.hessianSeconds();
                layerErrors = layers.layerErrors();
            }
            long t1 = System.nanoTime();
            // errors of the calibrated block against the full-precision block, both on this block's inputs; the outputs
            // are written as the next block's inputs while the pass goes on (on a GPU straight from device memory), and
            // kept on the device for the next task; the calibrated block's rows go to the work area beside the pass
            ExecutorService writer = Executors.newFixedThreadPool(4, r -> {
                Thread t = new Thread(r, "block " + block + " outputs");
                t.setDaemon(true);
                return t;
            });
            List<CompletableFuture<Path>> writes = new ArrayList<>();
            Tensor[] nextOnDevice = new Tensor[parts.size()];
            BlockStats stats;
            long t2, t3;
            CalibratedBlock done = calibrated;
            be.synchronize(); // the rows' writer reads the calibrated tensors on a stream of its own
            CompletableFuture<Path> rows = CompletableFuture.supplyAsync(() -> {
                try {
                    files.writeRows(conf, block, BlockRecords.of(block, done));
                    return null;
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                } finally {
                    be.endTask(); // this thread's device stream and handles (the norms read back) go back to the pool
                }
            }, writer);
            try {
                BlockStep.Outputs out = next == null ? null : (p, hidden, n, cols, onDevice) -> {
                    nextOnDevice[p] = onDevice;
                    writes.add(onDevice != null ? next.writeInBackground(writer, conf, block + 1, parts.get(p), onDevice)
                            : next.writeInBackground(writer, conf, block + 1, parts.get(p), hidden, n, cols));
                };
                stats = BlockStep.errors(fp, calibrated, s, in, seq, out, layerErrors);
                t2 = System.nanoTime();
                List<Path> written = new ArrayList<>();
                for (CompletableFuture<Path> w : writes) written.add(join(w));
                t3 = System.nanoTime();
                join(rows);
                if (next != null && resident) {
                    KeptInputs.put(next, block + 1, written, nextOnDevice.clone(), be);
                    Arrays.fill(nextOnDevice, null);
                }
            } finally {
                // a failed pass: the writes still reading device memory finish before it is freed
                for (CompletableFuture<Path> w : writes) w.exceptionally(e -> null).join();
                rows.exceptionally(e -> null).join();
                writer.shutdownNow();
                for (Tensor t : nextOnDevice) if (t != null) t.close();
            }
            long t4 = System.nanoTime();
            if (be.onDevice()) {
                // the calibrated weights' device memory now, not at some garbage collection (the full-precision block stays cached)
                java.util.Set<Tensor> fpWeights = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
                fp.linears().forEach(l -> fpWeights.add(l.weight()));
                calibrated.block().linears().forEach(l -> {
                    if (!fpWeights.contains(l.weight())) l.weight().close();
                });
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            if (tokens > 0) {
                System.err.printf(Locale.ROOT, "    block %d/%d in one task: %.1f s Hessian passes (inputs %s), %.1f s factors and "
                                + "column loops, %.1f s output pass, %.1f s more writing the next inputs, %.1f s more writing rows%n",
                        block + 1, blocks, sums,
                        given != null ? "walked to on the device" : kept != null ? "kept on the device" : "read from the work area", solve,
                        (t2 - t1) / 1e9, (t3 - t2) / 1e9, (t4 - t3) / 1e9);
            }
            return new BlockLoop.Outcome(block, stats, losses, tokens, seconds);
        }
    }

    /** A background write's file, its failure rethrown as it was thrown. */
    private static Path join(CompletableFuture<Path> write) throws IOException {
        try {
            return write.join();
        } catch (CompletionException e) {
            if (e.getCause() instanceof UncheckedIOException io) throw io.getCause();
            throw e;
        }
    }
}
