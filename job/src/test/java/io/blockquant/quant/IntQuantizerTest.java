package io.blockquant.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.tensor.Nd4jBackend;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Hand-computed levels. The inputs are chosen so every scale is a power of two and every division exact,
 * so the expected values below follow from the formulas by hand:
 * range widened to include 0, scale = (max − min)/(2^b − 1), zero = round(−min/scale),
 * level = clamp(round(x/scale) + zero, 0, 2^b − 1), round half to even.
 */
class IntQuantizerTest {

    private static float[] quantize(float[] w, int rows, int cols, IntQuantSpec spec) {
        float[] v = w.clone();
        IntQuantizer.fakeQuantizeWeight(v, rows, cols, spec);
        return v;
    }

    @Test
    void asymmetricPerChannelHandComputed() {
        // row 0: min −1, max 2.75 -> scale 3.75/15 = 0.25, zero = round(4) = 4
        //   −1 -> −4+4 = 0 -> −1;  −0.625 -> round(−2.5) = −2 -> 2 -> −0.5;  0.375 -> round(1.5) = 2 -> 6 -> 0.5;
        //   0.125 -> round(0.5) = 0 -> 4 -> 0;  2.75 -> 11 -> 15 -> 2.75;  1.1 -> round(4.4) = 4 -> 8 -> 1.0
        // row 1: min −0.375, max 3.375 -> scale 0.25, zero = round(1.5) = 2
        //   3.375 -> round(13.5) = 14 -> 16, clamped to 15 -> 0.25·13 = 3.25;  −0.375 -> round(−1.5) = −2 -> 0 -> −0.5
        //   1.0 -> 4 -> 6 -> 1.0;  0 -> 2 -> 0;  0.6 -> round(2.4) = 2 -> 4 -> 0.5;  2.0 -> 8 -> 10 -> 2.0
        // row 2: all positive, min widened to 0: 0.5 .. 7.5 -> scale 0.5, zero 0
        //   0.5 -> 1 -> 0.5;  7.5 -> 15;  1.25 -> round(2.5) = 2 -> 1.0;  3.75 -> round(7.5) = 8 -> 4.0;  2 -> 4 -> 2;  6 -> 12 -> 6
        // row 3: all negative, max widened to 0: −7.5 .. −0.25 -> scale 0.5, zero = 15
        //   −7.5 -> −15 -> 0 -> −7.5;  −0.25 -> round(−0.5) = −0 -> 15 -> 0;  −1.75 -> round(−3.5) = −4 -> 11 -> −2.0
        float[] w = {
            -1f, -0.625f, 0.375f, 0.125f, 2.75f, 1.1f,
            3.375f, -0.375f, 1.0f, 0f, 0.6f, 2.0f,
            0.5f, 7.5f, 1.25f, 3.75f, 2f, 6f,
            -7.5f, -0.25f, -1.75f, -1f, -3f, -5.25f};
        float[] expected = {
            -1f, -0.5f, 0.5f, 0f, 2.75f, 1.0f,
            3.25f, -0.5f, 1.0f, 0f, 0.5f, 2.0f,
            0.5f, 7.5f, 1.0f, 4.0f, 2f, 6f,
            -7.5f, 0f, -2.0f, -1f, -3f, -5.0f};
        // −5.25 -> round(−10.5) = −10 -> 5 -> −5.0
        assertArrayEquals(expected, quantize(w, 4, 6, new IntQuantSpec(4, 0, false)));
        assertArrayEquals(expected, quantize(w, 4, 6, new IntQuantSpec(4, -1, false)));

        IntQuantizer.Params p = IntQuantizer.params(w, 6, 12, 4, false);
        assertEquals(0.25f, p.scale());
        assertEquals(2f, p.zero());
        assertEquals(15, IntQuantizer.level(3.375f, p, 15)); // clamped from 16
        assertEquals(0, IntQuantizer.level(-0.375f, p, 15));
        // a zero point that is a tie: −min/scale = 0.625/0.25 = 2.5 -> 2 (half to even, not 3)
        float[] tie = {-0.625f, 3.125f, 1.0f, 0.3f, 2.5f, -0.1f};
        IntQuantizer.Params pt = IntQuantizer.params(tie, 0, 6, 4, false);
        assertEquals(0.25f, pt.scale());
        assertEquals(2f, pt.zero());
        int[] levels = new int[6];
        for (int i = 0; i < 6; i++) levels[i] = IntQuantizer.level(tie[i], pt, 15);
        // −2.5 -> −2 -> 0;  12.5 -> 12 -> 14;  4 -> 6;  1.2 -> 1 -> 3;  10 -> 12;  −0.4 -> 0 -> 2
        assertArrayEquals(new int[] {0, 14, 6, 3, 12, 2}, levels);
        assertArrayEquals(new float[] {-0.5f, 3.0f, 1.0f, 0.25f, 2.5f, 0f}, quantize(tie, 1, 6, new IntQuantSpec(4, 0, false)));

        IntQuantizer.Params neg = IntQuantizer.params(w, 18, 24, 4, false);
        assertEquals(0.5f, neg.scale());
        assertEquals(15f, neg.zero());
    }

    @Test
    void asymmetricPerGroupHandComputed() {
        // 2 rows × 8 columns, groups of 4
        // r0 g0: [−1, −0.625, 0.375, 2.75] scale 0.25 zero 4 -> [−1, −0.5, 0.5, 2.75]
        // r0 g1: [0.25, 0.5, 1.25, 7.5] min 0 scale 0.5 zero 0 -> [0 (round 0.5 = 0), 0.5, 1.0 (round 2.5 = 2), 7.5]
        // r1 g0: all zero -> zero
        // r1 g1: [−0.375, 3.375, 1.0, 0] scale 0.25 zero 2 -> [−0.5, 3.25, 1.0, 0]
        float[] w = {
            -1f, -0.625f, 0.375f, 2.75f, 0.25f, 0.5f, 1.25f, 7.5f,
            0f, 0f, 0f, 0f, -0.375f, 3.375f, 1.0f, 0f};
        float[] expected = {
            -1f, -0.5f, 0.5f, 2.75f, 0f, 0.5f, 1.0f, 7.5f,
            0f, 0f, 0f, 0f, -0.5f, 3.25f, 1.0f, 0f};
        assertArrayEquals(expected, quantize(w, 2, 8, new IntQuantSpec(4, 4, false)));

        // the same matrix per channel differs: row 0 now spans −1 .. 7.5 in one group
        float[] pc = quantize(w, 2, 8, new IntQuantSpec(4, 0, false));
        float s = 8.5f / 15;
        float z = (float) Math.rint(1f / s); // round(1.7647) = 2
        assertEquals(2f, z);
        for (int i = 0; i < 8; i++) {
            float lvl = Math.max(0, Math.min(15, (float) Math.rint(w[i] / s) + z));
            assertEquals(s * (lvl - z), pc[i], "per-channel element " + i);
        }
        assertEquals(-2 * s, pc[0]); // −1/s = −1.76 -> −2 -> level 0

        // a group of 2 with 2-bit levels: [−0.5, 1.0] -> scale 1.5/3 = 0.5, zero 1 -> exact
        float[] two = {-0.5f, 1.0f, 0.2f, 0.3f};
        float[] q2 = quantize(two, 1, 4, new IntQuantSpec(2, 2, false));
        assertEquals(-0.5f, q2[0]);
        assertEquals(1.0f, q2[1]);
        // [0.2, 0.3]: min 0, scale 0.1 (float), zero 0; 0.2/0.1 = 2 -> 0.2, 0.3/0.1 = 3 -> 0.3
        assertEquals(0.3f / 3 * 2, q2[2], 1e-7f);
        assertEquals(0.3f, q2[3], 1e-7f);
    }

    @Test
    void allZeroRowStaysZero() {
        float[] w = new float[3 * 16];
        for (int i = 16; i < 32; i++) w[i] = (i % 3) - 1; // a non-zero middle row
        for (int bits = 2; bits <= 8; bits++) {
            for (int group : new int[] {0, 4, 16}) {
                for (boolean sym : new boolean[] {false, true}) {
                    float[] q = quantize(w, 3, 16, new IntQuantSpec(bits, group, sym));
                    for (int i = 0; i < 16; i++) {
                        assertEquals(0f, q[i], "row 0, bits " + bits + " g" + group + " sym " + sym);
                        assertEquals(0f, q[32 + i], "row 2");
                    }
                }
            }
        }
        // the all-zero group's parameters: range [−1, 1] so 0 is a level
        IntQuantizer.Params p = IntQuantizer.params(new float[4], 0, 4, 4, false);
        assertEquals(2f / 15, p.scale());
        int zero = (int) p.zero();
        assertEquals(zero, p.zero(), 0f);
        assertTrue(zero == 7 || zero == 8, "zero point near the middle of [0, 15]: " + p.zero());
        assertEquals(0f, IntQuantizer.fakeQuantize(0f, p, 15));
    }

    @Test
    void symmetricHandComputed() {
        // absmax 1.875 -> range [−1.875, 1.875], scale 3.75/15 = 0.25, zero = 16/2 = 8
        //   −1.5 -> −6 -> 2 -> −1.5;  0.3 -> round(1.2) = 1 -> 9 -> 0.25;  0.75 -> 3 -> 11 -> 0.75
        //   1.875 -> round(7.5) = 8 -> 16, clamped to 15 -> 1.75;  −1.875 -> round(−7.5) = −8 -> 0 -> −2.0;  0.625 -> round(2.5) = 2 -> 0.5
        float[] w = {-1.5f, 0.3f, 0.75f, 1.875f, -1.875f, 0.625f};
        float[] expected = {-1.5f, 0.25f, 0.75f, 1.75f, -2.0f, 0.5f};
        assertArrayEquals(expected, quantize(w, 1, 6, new IntQuantSpec(4, 0, true)));
        IntQuantizer.Params p = IntQuantizer.params(w, 0, 6, 4, true);
        assertEquals(0.25f, p.scale());
        assertEquals(8f, p.zero());

        // the range is symmetric even when every value is positive: absmax 3.75 -> scale 7.5/15 = 0.5, zero 8
        //   3.75 -> round(7.5) = 8 -> 16 -> 15 -> 3.5;  1.25 -> round(2.5) = 2 -> 1.0;  0.5 -> 1 -> 0.5
        float[] pos = {3.75f, 1.25f, 0.5f, 0f};
        assertArrayEquals(new float[] {3.5f, 1.0f, 0.5f, 0f}, quantize(pos, 1, 4, new IntQuantSpec(4, 0, true)));
        // 8 bits: scale = 2·absmax/255, zero 128
        IntQuantizer.Params p8 = IntQuantizer.params(new float[] {-2.55f, 1f}, 0, 2, 8, true);
        assertEquals(5.1f / 255, p8.scale());
        assertEquals(128f, p8.zero());
    }

    /** On random weights: every output is scale·(level − zero) with an integer level in range, within half a step. */
    @Test
    void randomWeightsLandOnTheGrid() {
        Random rnd = new Random(5);
        int rows = 6, cols = 64;
        float[] w = new float[rows * cols];
        for (int i = 0; i < w.length; i++) w[i] = (float) (rnd.nextGaussian() * (1 + i / cols));
        for (int bits : new int[] {2, 3, 4, 8}) {
            for (int group : new int[] {0, 16, 32}) {
                IntQuantSpec spec = new IntQuantSpec(bits, group, false);
                float[] q = quantize(w, rows, cols, spec);
                int g = group <= 0 ? cols : group, maxq = (1 << bits) - 1;
                for (int start = 0; start < w.length; start += g) {
                    float min = 0, max = 0;
                    for (int i = start; i < start + g; i++) {
                        min = Math.min(min, w[i]);
                        max = Math.max(max, w[i]);
                    }
                    float scale = (max - min) / maxq;
                    float zero = (float) Math.rint(-min / scale);
                    for (int i = start; i < start + g; i++) {
                        double level = q[i] / scale + zero;
                        assertEquals(Math.rint(level), level, 1e-3, "on the grid");
                        assertTrue(level > -1e-3 && level < maxq + 1e-3, "level in range");
                        // within half a step, plus up to one step at the ends where the zero point was rounded
                        assertTrue(Math.abs(q[i] - w[i]) <= scale * 1.0001f, "error within a step: " + w[i] + " -> " + q[i]);
                        if (w[i] / scale + zero >= 0 && w[i] / scale + zero <= maxq) {
                            assertTrue(Math.abs(q[i] - w[i]) <= scale / 2 * 1.0001f, "error within half a step");
                        }
                    }
                }
            }
        }
    }

    @Test
    void perTokenActivationsHandComputed() {
        // 8 bits: scale = absmax/127
        //   row 0 absmax 127 -> scale 1: −3.5 -> −4 (half to even), 2.5 -> 2, 0.4 -> 0, −127 stays
        //   row 1 absmax 254 -> scale 2: −5 -> round(−2.5) = −2 -> −4;  3 -> round(1.5) = 2 -> 4;  1 -> round(0.5) = 0 -> 0
        //   row 2 all zero stays zero
        float[] x = {
            127f, -3.5f, 2.5f, 0.4f, -127f,
            254f, -5f, 3f, 1f, -254f,
            0f, 0f, 0f, 0f, 0f};
        float[] expected = {
            127f, -4f, 2f, 0f, -127f,
            254f, -4f, 4f, 0f, -254f,
            0f, 0f, 0f, 0f, 0f};
        float[] q = x.clone();
        IntQuantizer.fakeQuantizeTokens(q, 3, 5, 8);
        assertArrayEquals(expected, q);

        // a general row: each value becomes (absmax/127)·round(x·127/absmax)
        float[] r = {0.3f, -1.7f, 0.01f, 1.2f};
        float[] rq = r.clone();
        IntQuantizer.fakeQuantizeTokens(rq, 1, 4, 8);
        float scale = 1.7f / 127;
        for (int i = 0; i < 4; i++) assertEquals(scale * (float) Math.rint(r[i] / scale), rq[i], "element " + i);
        assertEquals(-1.7f, rq[1], 1e-6f);

        // 4 bits: scale = absmax/7: row absmax 7 -> 3.5 -> 4, −0.5 -> −0, 6.5 -> 6
        float[] f = {7f, 3.5f, -0.5f, 6.5f};
        IntQuantizer.fakeQuantizeTokens(f, 1, 4, 4);
        assertArrayEquals(new float[] {7f, 4f, -0f, 6f}, f);

        // through the backend, over the last dimension of a 3-D tensor
        var be = Nd4jBackend.INSTANCE;
        float[] got = be.fakeQuantizeTokens(be.fromFloats(x, 3, 1, 5), 8).toFloats();
        assertArrayEquals(expected, got);
    }

    @Test
    void asymmetricPerTokenActivationsHandComputed() {
        // the OmniQuant reference's activation rule: the row's own min and max (not widened to include 0),
        // scale = (max − min)/(2^b − 1), zero = round(−min/scale), level = clamp(round(x/scale) + zero, 0, 2^b − 1)
        // row 0, 2 bits: min −1, max 2 -> scale 1, zero 1:  −1 -> 0 -> −1;  0.4 -> 1 -> 0;  0.5 -> round(0.5) = 0 -> 1 -> 0;  2 -> 3 -> 2
        // row 1, 2 bits, all positive: min 1, max 4 -> scale 1, zero round(−1) = −1:
        //   1 -> 0 -> 1;  2.5 -> round(2.5) = 2 -> 1 -> 2;  3.5 -> round(3.5) = 4 -> 3 -> 4;  4 -> 3 -> 4
        //   (symmetric absmax would give scale 4: 0, 4, 4, 4; the weight rule, widened to 0, scale 4/3)
        float[] x = {-1f, 0.4f, 0.5f, 2f, 1f, 2.5f, 3.5f, 4f};
        float[] v = x.clone();
        IntQuantizer.fakeQuantizeTokensAsym(v, 2, 4, 2);
        assertArrayEquals(new float[] {-1f, 0f, 0f, 2f, 1f, 2f, 4f, 4f}, v);
        // 4 bits: min −0.5, max 7 -> scale 0.5, zero 1:  −0.5 -> 0;  7 -> 15;  0.25 -> round(0.5) = 0 -> 1 -> 0;  0.75 -> round(1.5) = 2 -> 3 -> 1
        float[] y = {-0.5f, 7f, 0.25f, 0.75f};
        IntQuantizer.fakeQuantizeTokensAsym(y, 1, 4, 4);
        assertArrayEquals(new float[] {-0.5f, 7f, 0f, 1f}, y);
        // the backend op is the same arithmetic, row by row over the last dimension (a [2, 1, 4] split-head tensor)
        var be = Nd4jBackend.INSTANCE;
        float[] expect = x.clone();
        IntQuantizer.fakeQuantizeTokensAsym(expect, 2, 4, 2);
        assertArrayEquals(expect, be.fakeQuantizeTokensAsym(be.fromFloats(x, 2, 1, 4), 2).toFloats());
        assertArrayEquals(expect, be.fakeQuantizeTokens(be.fromFloats(x, 2, 4), TokenQuant.integer(2, true)).toFloats());
    }

    @Test
    void groupSizeNotDividingWidthIsRejected() {
        float[] w = new float[2 * 10];
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> IntQuantizer.fakeQuantizeWeight(w, 2, 10, new IntQuantSpec(4, 4, false)));
        assertTrue(e.getMessage().contains("4") && e.getMessage().contains("10"), e.getMessage());
        assertThrows(IllegalArgumentException.class,
                () -> IntQuantizer.fakeQuantizeWeight(w, 2, 10, new IntQuantSpec(4, 16, false)));
        var be = Nd4jBackend.INSTANCE;
        assertThrows(IllegalArgumentException.class,
                () -> be.fakeQuantizeWeight(be.fromFloats(w, 2, 10), new IntQuantSpec(4, 3, true)));
        // dividing group sizes are fine
        IntQuantizer.fakeQuantizeWeight(w.clone(), 2, 10, new IntQuantSpec(4, 5, false));
        IntQuantizer.fakeQuantizeWeight(w.clone(), 2, 10, new IntQuantSpec(4, 10, false));
    }

    @Test
    void specValidationAndLabels() {
        assertThrows(IllegalArgumentException.class, () -> new IntQuantSpec(1, 0, false));
        assertThrows(IllegalArgumentException.class, () -> new IntQuantSpec(9, 0, false));
        assertEquals(15, new IntQuantSpec(4, 0, false).maxLevel());
        assertEquals(255, new IntQuantSpec(8, 64, false).maxLevel());
        assertThrows(IllegalArgumentException.class, () -> new FakeQuantRecipe(null, 1));
        assertEquals("fp", FakeQuantRecipe.NONE.label());
        assertEquals("rtn W4A16 g64", new FakeQuantRecipe(new IntQuantSpec(4, 64, false), 0).label());
        assertEquals("rtn W8A8 pc sym", new FakeQuantRecipe(new IntQuantSpec(8, 0, true), 8).label());
    }
}
