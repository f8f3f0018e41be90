package io.blockquant.algo.omniquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.InputRanges;
import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.model.Family;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.DecoderBlock;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The input ranges against generate_act_scale_shift.py's definition computed by hand on the attention norm's
 * output (what q_proj reads): per channel max |x| over every token, and per window mid = (max + min)/2 folded
 * as {@code s = mid₁; s ← 0.99·s + 0.01·midᵢ}; parts taken apart merge to the same figures as one pass.
 */
class InputRangesTest {
    private static final int WINDOWS = 5, SEQ = 4, HIDDEN = 16;

    @Test
    void rangesAreTheReferencesScalesAndShiftsAndPartsMergeToOnePass() {
        ModelSpec spec = TestBlocks.spec(Family.LLAMA, HIDDEN, 4, 2, 24, false);
        DecoderBlock block = TestBlocks.block(spec, 5);
        float[] x = TestBlocks.inputs(new Random(9), WINDOWS * SEQ, HIDDEN);
        for (int i = 0; i < x.length; i += 7) x[i] += 3f; // uneven channel ranges, so the mids move between windows
        String q = HeapBlock.name(block, Proj.Q), o = HeapBlock.name(block, Proj.O);

        float[] n = block.attnNorm().forward(TestBlocks.BE.fromFloats(x, WINDOWS * SEQ, HIDDEN)).toFloats();
        double[] absMax = new double[HIDDEN], shift = new double[HIDDEN];
        for (int w = 0; w < WINDOWS; w++) {
            for (int c = 0; c < HIDDEN; c++) {
                double mx = Double.NEGATIVE_INFINITY, mn = Double.POSITIVE_INFINITY;
                for (int r = w * SEQ; r < (w + 1) * SEQ; r++) {
                    double v = n[r * HIDDEN + c];
                    absMax[c] = Math.max(absMax[c], Math.abs(v));
                    mx = Math.max(mx, v);
                    mn = Math.min(mn, v);
                }
                double mid = (mx + mn) / 2;
                shift[c] = w == 0 ? mid : 0.99 * shift[c] + 0.01 * mid;
            }
        }

        float[][] windows = BlockCalibrator.windows(x, WINDOWS);
        InputRanges whole = InputRanges.of(block, List.of(q, o), windows, SEQ, 2); // two windows a pass, then one
        float[] gotMax = whole.absMax(q), gotShift = whole.shift(q);
        for (int c = 0; c < HIDDEN; c++) {
            assertEquals(absMax[c], gotMax[c], 1e-6 * absMax[c], "max |x| of channel " + c);
            assertEquals(shift[c], gotShift[c], 1e-5, "shift of channel " + c);
        }
        assertEquals(WINDOWS, whole.windows());

        // windows 0..1 on one task and 2..4 on another, merged in window order: the same ranges
        InputRanges first = InputRanges.of(block, List.of(q, o), java.util.Arrays.copyOfRange(windows, 0, 2), SEQ, 2);
        InputRanges rest = InputRanges.of(block, List.of(q, o), java.util.Arrays.copyOfRange(windows, 2, WINDOWS), SEQ, 3);
        InputRanges merged = InputRanges.merge(List.of(first, rest));
        for (String layer : List.of(q, o)) {
            float[] a = whole.shift(layer), b = merged.shift(layer), ma = whole.absMax(layer), mb = merged.absMax(layer);
            for (int c = 0; c < a.length; c++) {
                assertEquals(a[c], b[c], 1e-6, layer + " shift " + c);
                assertEquals(ma[c], mb[c], 1e-6 * ma[c], layer + " max " + c); // passes of 2, 3 windows: BLAS may differ in the last bit
            }
        }
        // in the other order the shift is another average: the order is part of the definition
        float[] swapped = InputRanges.merge(List.of(rest, first)).shift(q);
        double moved = 0;
        for (int c = 0; c < HIDDEN; c++) moved = Math.max(moved, Math.abs(swapped[c] - gotShift[c]));
        assertTrue(moved > 1e-4, "the merge must follow window order, moved " + moved);
    }

    @Test
    void windowColumnRangesAreEachWindowsColumnMaximaThenMinima() {
        // two windows of two rows, three columns
        float[] x = {1, -2, 5,
                     3, -1, -5,
                     0, 7, 2,
                     -4, 6, 2};
        float[] r = TestBlocks.BE.windowColumnRanges(TestBlocks.BE.fromFloats(x, 4, 3), 2).toFloats();
        org.junit.jupiter.api.Assertions.assertArrayEquals(new float[] {3, -1, 5, 1, -2, -5, 0, 7, 2, -4, 6, 2}, r);
        assertThrows(IllegalArgumentException.class, () -> TestBlocks.BE.windowColumnRanges(TestBlocks.BE.fromFloats(x, 4, 3), 3));
    }

    @Test
    void aLayerTheBlockLacksOrWasNotTakenIsNamed() {
        ModelSpec spec = TestBlocks.spec(Family.OPT, HIDDEN, 4, 4, 24, false);
        DecoderBlock block = TestBlocks.block(spec, 6);
        float[][] windows = BlockCalibrator.windows(TestBlocks.inputs(new Random(1), 2 * SEQ, HIDDEN), 2);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> InputRanges.of(block, List.of("mlp.nope"), windows, SEQ, 1));
        assertTrue(e.getMessage().contains("mlp.nope"), e.getMessage());
        InputRanges r = InputRanges.of(block, List.of(HeapBlock.name(block, Proj.Q)), windows, SEQ, 1);
        e = assertThrows(IllegalArgumentException.class, () -> r.absMax(HeapBlock.name(block, Proj.O)));
        assertTrue(e.getMessage().contains(HeapBlock.name(block, Proj.O)), e.getMessage());
    }
}
