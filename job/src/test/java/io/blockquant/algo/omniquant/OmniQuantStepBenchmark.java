package io.blockquant.algo.omniquant;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.blockquant.model.Family;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.quant.IntQuantSpec;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Prints the speed of one OmniQuant training step (LET + LWC + block forward/backward + chain rule + AdamW, the
 * objective resident on the backend as the training loop keeps it) on a
 * tiny-llama-shaped block (hidden 256, 8 heads / 4 kv heads, MLP 704). Runs only with {@code -Dbench=true}.
 */
class OmniQuantStepBenchmark {

    @Test
    void trainingStepSpeed() {
        assumeTrue(Boolean.getBoolean("bench"), "benchmark: run with -Dbench=true");
        ModelSpec spec = new ModelSpec(Family.LLAMA, "llama", 256, 1, 8, 4, 32, 704, 4096, 1024, 1e-5f,
                io.blockquant.tensor.Activation.SILU, false, false, false, false, TestBlocks.ropeInvFreq(32),
                null);
        DecoderBlock block = TestBlocks.block(spec, 1);
        HeapBlock fp = HeapBlock.of(block);
        int[][] shapes = {{1, 512}, {4, 512}, {16, 128}};
        for (int[] s : shapes) {
            int batch = s[0], seq = s[1], rows = batch * seq;
            float[] x = TestBlocks.inputs(new Random(2), rows, 256);
            float[] t = TestBlocks.forward(block, x, batch, seq);
            for (boolean let : new boolean[] {false, true}) {
                OmniQuantObjective obj = new OmniQuantObjective(fp, let ? new EquivalentTransform(fp, false, false, false) : null,
                        new IntQuantSpec(3, 0, false), true, let ? 4 : 16);
                double sec;
                // as the training loop runs it: the objective resident on the backend, a step = loss, gradients, AdamW
                try (ResidentObjective r = obj.resident(TestBlocks.BE)) {
                    java.util.List<io.blockquant.tensor.Tensor> params = new java.util.ArrayList<>(r.lwcParameters());
                    params.addAll(r.letParameters());
                    double[] lr = new double[params.size()];
                    java.util.Arrays.fill(lr, 1e-3);
                    try (AdamW opt = new AdamW(TestBlocks.BE, params, lr, 0)) {
                        Runnable step = () -> TestBlocks.BE.scratchValue(() -> {
                            ResidentObjective.Gradients g = r.evaluate(TestBlocks.BE.fromFloats(x, rows, 256),
                                    TestBlocks.BE.fromFloats(t, rows, 256), batch, seq, true, false);
                            java.util.List<io.blockquant.tensor.Tensor> grads = new java.util.ArrayList<>(g.lwc());
                            grads.addAll(g.let());
                            opt.step(grads);
                            r.truncateScales();
                            return g.loss();
                        });
                        for (int i = 0; i < 3; i++) step.run();
                        int reps = 10;
                        long t0 = System.nanoTime();
                        for (int i = 0; i < reps; i++) step.run();
                        sec = (System.nanoTime() - t0) / 1e9 / reps;
                    }
                }
                long params = 0;
                for (HeapBlock.Layer l : fp.layers) params += (long) l.out() * l.in();
                // forward: 2·rows·params (linears) + 4·batch·heads·seq²·headDim (scores, weighted values);
                // backward ≈ twice the forward
                double flop = 3.0 * (2.0 * rows * params + 4.0 * batch * 8 * (double) seq * seq * 32);
                System.out.printf("step %s batch %d × seq %d: %.1f ms, %.1f GFLOP/s%n", let ? "LWC+LET W3A4" : "LWC W3A16",
                        batch, seq, sec * 1e3, flop / sec / 1e9);
            }
        }
    }
}
