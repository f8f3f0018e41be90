package io.blockquant.algo;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.Fixtures;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.quant.FakeQuantRecipe;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.TensorBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** OmniQuant on tiny-llama's first block: the trained block beats round-to-nearest, deterministically. */
class OmniQuantCalibratorTest {

    static final TensorBackend BE = Nd4jBackend.INSTANCE;
    static final int NSAMPLES = 8, SEQ = 64;
    static DecoderBlock block;
    static float[] inputs, targets;

    @BeforeAll
    static void load() throws Exception {
        Configuration conf = new Configuration();
        Path dir = new Path(Fixtures.model("tiny-llama").toUri());
        ModelSpec spec = ModelSpecReader.read(dir, conf);
        int[][] windows = new int[NSAMPLES][SEQ];
        Random rnd = new Random(1);
        for (int[] w : windows) for (int i = 0; i < SEQ; i++) w[i] = rnd.nextInt(spec.vocabSize());
        try (Checkpoint ckpt = Checkpoint.open(dir, conf)) {
            CausalLm model = new ModelLoader(ckpt, spec, BE).model();
            block = model.blocks().get(0);
            inputs = BE.scratchValue(() -> model.embed(windows).toFloats());
        }
        targets = forward(block, inputs);
    }

    static float[] forward(DecoderBlock b, float[] x) {
        int h = (int) b.linears().get(0).weight().size(1);
        return BE.scratchValue(() -> b.forward(BE.fromFloats(x, (long) NSAMPLES * SEQ, h), NSAMPLES, SEQ).toFloats());
    }

    static double mse(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
        return s / a.length;
    }

    @Test
    void trainedW3BeatsRoundToNearestAndIsDeterministic() {
        OmniQuantConfig cfg = OmniQuantConfig.of(io.blockquant.model.Family.LLAMA, 3, 0, 16)
                .withEpochs(20).withBatchSize(1);
        List<String> log = new ArrayList<>();
        CalibratedBlock cb = OmniQuantCalibrator.calibrate(block, BlockCalibrator.windows(inputs, NSAMPLES),
                BlockCalibrator.windows(targets, NSAMPLES), SEQ, cfg, 42, log::add);
        double rtn = mse(forward(RtnQuantizer.apply(block, new FakeQuantRecipe(new IntQuantSpec(3, 0, false), 0)), inputs), targets);
        double omni = mse(forward(cb.block(), inputs), targets);
        System.out.printf("tiny-llama block 0, W3 per-channel: RTN MSE %.4g, OmniQuant MSE %.4g; %s%n", rtn, omni, log);
        assertEquals(20, log.size());
        assertTrue(omni < 0.9 * rtn, "OmniQuant " + omni + " not clearly below RTN " + rtn);
        for (Linear l : cb.block().linears()) assertArrayEquals(cb.layers().get(l.name()).dequantize(), l.weight().toFloats());

        CalibratedBlock again = OmniQuantCalibrator.calibrate(block, BlockCalibrator.windows(inputs, NSAMPLES),
                BlockCalibrator.windows(targets, NSAMPLES), SEQ, cfg, 42, s -> {});
        for (Linear l : cb.block().linears()) {
            assertArrayEquals(((QuantizedLinear) cb.layers().get(l.name())).levels(), ((QuantizedLinear) again.layers().get(l.name())).levels(), "same seed, same levels");
            assertArrayEquals(((QuantizedLinear) cb.layers().get(l.name())).scales(), ((QuantizedLinear) again.layers().get(l.name())).scales());
        }
    }

    @Test
    void augmentedLossTrainsAgainstTheMeanOfTheTargetAndTheFullPrecisionBlockOnTheQuantizedInputs() {
        // quantized-prefix inputs: the full-precision inputs plus noise, as a quantized block before would give
        Random rnd = new Random(7);
        float[] quantIn = inputs.clone();
        for (int i = 0; i < quantIn.length; i++) quantIn[i] += 0.05f * (float) rnd.nextGaussian();
        float[] fOnQuant = forward(block, quantIn);
        float[][] mean = OmniQuantCalibrator.augmentedTargets(block, BlockCalibrator.windows(quantIn, NSAMPLES),
                BlockCalibrator.windows(targets, NSAMPLES), SEQ);
        int width = targets.length / NSAMPLES;
        for (int w = 0; w < NSAMPLES; w++) {
            for (int i = 0; i < width; i++) {
                float expected = (targets[w * width + i] + fOnQuant[w * width + i]) / 2;
                assertEquals(expected, mean[w][i], 1e-5f * Math.max(1, Math.abs(expected)), "window " + w + " element " + i);
            }
        }
        // the reference's two-term loss minus twice the mean target's loss is the same for any output o
        float[] rtnOut = forward(RtnQuantizer.apply(block, new FakeQuantRecipe(new IntQuantSpec(3, 0, false), 0)), quantIn);
        float[] flat = new float[targets.length];
        for (int w = 0; w < NSAMPLES; w++) System.arraycopy(mean[w], 0, flat, w * width, width);
        double atRtn = mse(rtnOut, targets) + mse(rtnOut, fOnQuant) - 2 * mse(rtnOut, flat);
        double atInputs = mse(quantIn, targets) + mse(quantIn, fOnQuant) - 2 * mse(quantIn, flat);
        assertEquals(atRtn, atInputs, 1e-4 * Math.abs(atRtn) + 1e-9, "the loss differs from twice the mean target's by a constant");
        assertTrue(mse(targets, fOnQuant) > 0, "the two targets differ, so the check means something");
    }

    @Test
    void windowsKeptOnTheBackendMakeTheSameBatchesAsTheHeapCopies() {
        float[][] in = BlockCalibrator.windows(inputs, NSAMPLES), out = BlockCalibrator.windows(targets, NSAMPLES);
        int hidden = in[0].length / SEQ;
        try (OmniQuantCalibrator.DeviceWindows d = OmniQuantCalibrator.DeviceWindows.of(BE, in, out, SEQ, hidden)) {
            for (int[] ws : new int[][] {{3}, {5, 0}, {7, 2, 2, 6}}) {
                float[] x = BE.scratchValue(() -> d.inputs(ws).toFloats()), t = BE.scratchValue(() -> d.targets(ws).toFloats());
                assertArrayEquals(BlockCalibrator.rows(in, ws), x, "inputs of windows " + java.util.Arrays.toString(ws));
                assertArrayEquals(BlockCalibrator.rows(out, ws), t, "targets of windows " + java.util.Arrays.toString(ws));
            }
        }
        assertEquals(null, OmniQuantCalibrator.DeviceWindows.upload(BE, in, out, SEQ, hidden), "the CPU backend keeps them on the heap");
    }
}
