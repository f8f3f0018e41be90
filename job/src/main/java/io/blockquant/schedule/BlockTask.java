package io.blockquant.schedule;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.CalibratedBlock;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.store.BlockRecords;
import java.io.IOException;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;

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

    /** {@code next}: where the calibrated block's outputs go (the next block's inputs), null when nothing reads them. */
    static BlockLoop.Outcome calibrate(int block, DecoderBlock fp, ActivationFiles inputs, ActivationFiles next, BlockFiles files,
                                       Configuration conf, List<Integer> parts, BlockPlan plan, QuantizeSettings s, String omniParams,
                                       int seq, int nsamples, int blocks) throws IOException {
        long t0 = System.nanoTime();
        CalibratedBlock calibrated;
        Map<String, Double> losses = Map.of();
        long tokens = 0;
        double solve = 0;
        try (BlockStep.OnBackend in = new BlockStep.OnBackend(inputs.inputs(conf, block, parts), fp.linears().get(0).weight().backend())) {
            if (s.calibrator() instanceof BlockCalibrator.OnBlockTargets) {
                // inputs and targets both from the full-precision stream: block i's inputs, block i+1's inputs
                calibrated = SequentialQuantizeJob.omniQuantBlock(fp, block, inputs, inputs, parts, conf, s, omniParams, seq, nsamples,
                        blocks);
            } else {
                BlockStep.Layers layers = BlockStep.layers(fp, s.calibrator(), plan, s, in, seq);
                calibrated = layers.block();
                losses = layers.losses();
                tokens = layers.tokens();
                solve = layers.calibrationSeconds();
            }
            long t1 = System.nanoTime();
            double[] writing = new double[1];
            BlockStep.Outputs out = next == null ? null : (p, hidden, rows, cols) -> {
                long w0 = System.nanoTime();
                next.write(conf, block + 1, parts.get(p), hidden, rows, cols);
                writing[0] += (System.nanoTime() - w0) / 1e9;
            };
            // errors of the calibrated block against the full-precision block, both on this block's inputs
            BlockStats stats = BlockStep.errors(fp, calibrated, s, in, seq, out);
            long t2 = System.nanoTime();
            files.writeRows(conf, block, BlockRecords.of(block, calibrated));
            double seconds = (System.nanoTime() - t0) / 1e9;
            if (tokens > 0) {
                System.err.printf(Locale.ROOT, "    block %d/%d in one task: %.1f s Hessians and layers (%.1f s of it factors and "
                                + "column loops), %.1f s output pass (%.1f s of it writing the next inputs), %.1f s writing rows%n",
                        block + 1, blocks, (t1 - t0) / 1e9, solve, (t2 - t1) / 1e9, writing[0], (System.nanoTime() - t2) / 1e9);
            }
            return new BlockLoop.Outcome(block, stats, losses, tokens, seconds);
        }
    }
}
