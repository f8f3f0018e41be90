package io.blockquant.schedule;

import io.blockquant.calib.CalibrationSet;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.List;
import org.apache.hadoop.conf.Configuration;

/**
 * Parallel mode's inputs on a GPU executor, without the capture pass: the executor runs the full-precision model
 * forward over the calibration windows itself, its hidden states kept on its GPU from one block task to the next.
 * Block b's task on an executor whose walk stands at block a ≤ b runs the full-precision blocks a..b−1 and hands
 * over a copy of block b's inputs; a walk past b, or none, starts again from the embedding. With block b's task
 * placed where block b − n ran (n executors, {@link BlockExecutor#mapNear}), each GPU forwards every block once and
 * calibrates every n-th: no block's inputs are written (the capture wrote all of them to {@code _work} first: 4 GiB
 * a block at 8B, about 690 GB for a 70B, on one GPU, before any calibration).
 */
final class FullPrecisionWalk {

    /** The run and calibration the walk belongs to; the block its hidden states enter; one tensor per partition. */
    private static String key;
    private static int at;
    private static Tensor[] hidden;

    private FullPrecisionWalk() {}

    /**
     * Block {@code block}'s full-precision inputs, one {@code [windows·seq, hidden]} tensor per partition of
     * {@code parts} ({@code perTask} windows each), as copies the caller owns. {@code run} names the run (its work
     * area): another run's walk is never reused.
     */
    static synchronized Tensor[] inputs(String run, ModelRef model, CalibrationSet windows, List<Integer> parts, int perTask,
                                        int block, TensorBackend be, Configuration conf) {
        int seq = windows.seqlen();
        if (hidden == null || !run.equals(key) || at > block) {
            clear();
            Tensor[] h = new Tensor[parts.size()];
            for (int i = 0; i < h.length; i++) {
                int[][] batch = QuantizeJob.windowsOf(windows, parts.get(i), Math.max(1, perTask));
                float[] x = be.scratchValue(() -> ExecutorBlocks.embed(model, batch, be, conf));
                h[i] = be.fromFloats(x, (long) batch.length * seq, x.length / ((long) batch.length * seq));
            }
            hidden = h;
            key = run;
            at = 0;
        }
        while (at < block) {
            ExecutorBlocks.readAhead(model, at + 1, be, conf);
            int b = at;
            ExecutorBlocks.once(model, b, be, conf, fp -> forward(fp, be, seq));
            at++;
        }
        Tensor[] copies = new Tensor[hidden.length];
        for (int i = 0; i < hidden.length; i++) copies[i] = be.scale(hidden[i], 1f); // exact: x·1 = x
        be.synchronize(); // the copies are read by writer threads only after this
        return copies;
    }

    private static void forward(DecoderBlock fp, TensorBackend be, int seq) {
        Tensor[] before = hidden.clone();
        for (int i = 0; i < hidden.length; i++) {
            Tensor x = before[i];
            int rows = Math.toIntExact(x.size(0));
            hidden[i] = be.scratch(() -> fp.forward(x, rows / seq, seq));
        }
        // the inputs were made on an earlier task's stream, whose order their free follows: this one's reads first
        be.synchronize();
        for (Tensor x : before) x.close();
    }

    /** Lets go of the walk's hidden states. */
    static synchronized void clear() {
        if (hidden != null) {
            for (Tensor t : hidden) if (t != null) t.close();
        }
        hidden = null;
        key = null;
        at = 0;
    }
}
