package io.blockquant.algo.omniquant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.SmoothQuantCalibrator;
import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.model.Family;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.tensor.Tensor;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * SmoothQuant against its definition (Xiao et al. eq. 4, smoothquant's smooth_ln_fcs): the scales from the
 * calibration inputs' channel maxima and the readers' weight maxima, the smoothing an exact equivalence (only
 * the weight rounding changes the function), and a restore from the learned scales giving the same block.
 */
class SmoothQuantCalibratorTest {

    static final int BATCH = 3, SEQ = 6, HIDDEN = 16;

    private static DecoderBlock block(Family family, long seed) {
        return TestBlocks.block(TestBlocks.spec(family, HIDDEN, 4, 2, 24, true), seed);
    }

    private static SmoothQuantCalibrator w8(double alpha) {
        return new SmoothQuantCalibrator(new IntQuantSpec(8, 0, false), ActivationQuant.NONE, alpha);
    }

    @ParameterizedTest
    @EnumSource(Family.class)
    void scalesFollowEquation4AndTheFoldKeepsTheFunction(Family family) {
        int batch = BATCH, seq = SEQ, hidden = HIDDEN;
        DecoderBlock block = block(family, 21);
        float[] x = TestBlocks.inputs(new Random(3), batch * seq, hidden);
        double alpha = 0.5;
        SmoothQuantCalibrator sq = w8(alpha);
        BlockCalibrator.Learned learned = sq.train(block, BlockCalibrator.windows(x, batch),
                BlockCalibrator.windows(TestBlocks.forward(block, x, batch, seq), batch), null, seq, 0, null);

        // eq. 4 by hand: the attention norm's output channel max over all tokens, the weight max over q, k, v (and
        // Falcon-7B's MLP, which reads the same norm)
        HeapBlock heap = HeapBlock.of(block);
        EquivalentTransform t = new EquivalentTransform(heap, false, false, false);
        Tensor n = block.attnNorm().forward(TestBlocks.BE.fromFloats(x, batch * seq, hidden));
        float[] nv = n.toFloats();
        float[] expect = new float[hidden];
        for (int c = 0; c < hidden; c++) {
            double a = 0, w = 0;
            for (int r = 0; r < batch * seq; r++) a = Math.max(a, Math.abs(nv[r * hidden + c]));
            for (Proj p : t.readers().attnNorm()) {
                HeapBlock.Layer l = heap.layer(p);
                int[] rows = heap.rowsOf[p.ordinal()];
                for (int i = 0; i < (rows == null ? l.out() : rows.length); i++) {
                    w = Math.max(w, Math.abs(l.w()[(rows == null ? i : rows[i]) * hidden + c]));
                }
            }
            expect[c] = (float) (Math.pow(a, alpha) / Math.pow(w, 1 - alpha));
        }
        float[] got = learned.parameters().get("smoothquant.attn_scale");
        for (int c = 0; c < hidden; c++) assertEquals(expect[c], got[c], 1e-5 * expect[c], "attn scale " + c);
        assertEquals(family != Family.FALCON, learned.parameters().containsKey("smoothquant.mlp_scale"));

        // W8 after smoothing: the function is kept up to 8-bit rounding
        float[] y = TestBlocks.forward(block, x, batch, seq), yq = TestBlocks.forward(learned.block().block(), x, batch, seq);
        double err = 0, ref = 0;
        for (int i = 0; i < y.length; i++) {
            err += (y[i] - yq[i]) * (double) (y[i] - yq[i]);
            ref += y[i] * (double) y[i];
        }
        assertTrue(err < 1e-4 * ref, "relative squared error " + err / ref);

        // the learned scales restore the same block; a wrong one is refused by name
        float[] restored = TestBlocks.forward(sq.restore(block, learned.parameters(), "test").block(), x, batch, seq);
        assertArrayEquals(yq, restored);
        Map<String, float[]> bad = new java.util.LinkedHashMap<>(learned.parameters());
        bad.put("smoothquant.attn_scale", new float[3]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> sq.check(block, bad, "f.safetensors"));
        assertTrue(e.getMessage().contains("'smoothquant.attn_scale' has 3 values"), e.getMessage());
    }

    /**
     * Given the full-precision stream's ranges, the scales follow them and not the inputs (the pipeline's inputs are
     * the quantized prefix's outputs): the same scales as training on the windows those ranges came from.
     */
    @ParameterizedTest
    @EnumSource(Family.class)
    void givenRangesReplaceTheInputs(Family family) {
        int batch = BATCH, seq = SEQ, hidden = HIDDEN;
        DecoderBlock block = block(family, 22);
        float[] quantizedPrefix = TestBlocks.inputs(new Random(4), batch * seq, hidden);
        float[] fullPrecision = TestBlocks.inputs(new Random(5), batch * seq, hidden);
        for (int i = 0; i < fullPrecision.length; i += 5) fullPrecision[i] *= 4f;
        float[][] targets = BlockCalibrator.windows(TestBlocks.forward(block, fullPrecision, batch, seq), batch);
        SmoothQuantCalibrator sq = w8(0.5);
        io.blockquant.algo.InputRanges ranges = io.blockquant.algo.InputRanges.of(block, sq.rangedInputs(block),
                BlockCalibrator.windows(fullPrecision, batch), seq, 1);
        float[] given = sq.train(block, BlockCalibrator.windows(quantizedPrefix, batch), targets, ranges, seq, 0, null)
                .parameters().get("smoothquant.attn_scale");
        float[] own = sq.train(block, BlockCalibrator.windows(fullPrecision, batch), targets, null, seq, 0, null)
                .parameters().get("smoothquant.attn_scale");
        float[] prefix = sq.train(block, BlockCalibrator.windows(quantizedPrefix, batch), targets, null, seq, 0, null)
                .parameters().get("smoothquant.attn_scale");
        assertArrayEquals(own, given);
        double moved = 0;
        for (int c = 0; c < hidden; c++) moved = Math.max(moved, Math.abs(prefix[c] - given[c]) / given[c]);
        assertTrue(moved > 0.05, "the inputs' own ranges give other scales, moved " + moved);
    }
}
