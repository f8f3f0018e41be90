package io.blockquant.algo.omniquant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.algo.CalibratedBlock;
import io.blockquant.algo.QuantizedLinear;
import io.blockquant.model.Family;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.quant.IntQuantSpec;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** LET is an equivalent transformation: folded into norms, weights and biases it keeps the full-precision function. */
class LetFoldingTest {

    static final int BATCH = 2, SEQ = 7;

    static double relativeError(float[] a, float[] b) {
        double e = 0, r = 0;
        for (int i = 0; i < a.length; i++) {
            e += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
            r += (double) b[i] * b[i];
        }
        return Math.sqrt(e / r);
    }

    static EquivalentTransform randomTransform(HeapBlock fp, Random rnd, boolean identity) {
        EquivalentTransform let = new EquivalentTransform(fp, true, true, fp.spec.family().descriptor().gatedMlp());
        if (identity) return let;
        for (float[] s : let.scales()) for (int i = 0; i < s.length; i++) s[i] = (float) Math.exp(0.5 * rnd.nextGaussian());
        for (float[] d : new float[][] {let.attnShift, let.mlpShift, let.outShift}) {
            if (d != null) for (int i = 0; i < d.length; i++) d[i] = (float) rnd.nextGaussian();
        }
        return let;
    }

    @ParameterizedTest
    @EnumSource(Family.class)
    void randomScalesAndShiftsKeepTheFunction(Family family) {
        ModelSpec spec = TestBlocks.spec(family, 32, 4, 2, 48, true);
        DecoderBlock block = TestBlocks.block(spec, 3);
        Random rnd = new Random(9);
        float[] x = TestBlocks.inputs(rnd, BATCH * SEQ, 32);
        float[] expected = TestBlocks.forward(block, x, BATCH, SEQ);
        HeapBlock fp = HeapBlock.of(block);

        EquivalentTransform let = randomTransform(fp, rnd, false);
        if (family != Family.LLAMA) assertTrue(let.attnShift != null && let.outShift != null, "shifts are exercised");
        OmniQuantObjective obj = new OmniQuantObjective(fp, let, new IntQuantSpec(4, 0, false), true, 16);
        DecoderBlock folded = obj.transformedFullPrecision(TestBlocks.BE);
        // the transformed weights really differ from the original ones (the test is not vacuous)
        assertTrue(relativeError(folded.linears().get(0).weight().toFloats(), block.linears().get(0).weight().toFloats()) > 0.1);
        double err = relativeError(TestBlocks.forward(folded, x, BATCH, SEQ), expected);
        // float32 forward of a re-parametrized block: rounding differs, the function does not
        assertTrue(err < 2e-5, family + ": folded LET changes the output by " + err);

        EquivalentTransform identity = randomTransform(fp, rnd, true);
        DecoderBlock same = new OmniQuantObjective(fp, identity, new IntQuantSpec(4, 0, false), true, 16)
                .transformedFullPrecision(TestBlocks.BE);
        double errId = relativeError(TestBlocks.forward(same, x, BATCH, SEQ), expected);
        assertTrue(errId < 1e-5, family + ": identity LET changes the output by " + errId);
    }

    /** The stored block computes what training optimized, and its quantized weights are exactly the stored levels. */
    @ParameterizedTest
    @EnumSource(Family.class)
    void foldedQuantizedBlockIsTheTrainedFunction(Family family) {
        ModelSpec spec = TestBlocks.spec(family, 32, 4, 2, 48, true);
        DecoderBlock block = TestBlocks.block(spec, 4);
        Random rnd = new Random(10);
        float[] x = TestBlocks.inputs(rnd, BATCH * SEQ, 32);
        float[] target = TestBlocks.forward(block, x, BATCH, SEQ);
        HeapBlock fp = HeapBlock.of(block);
        OmniQuantObjective obj = new OmniQuantObjective(fp, randomTransform(fp, rnd, false), new IntQuantSpec(3, 16, false), true, 6);
        for (float[] p : obj.lwcParameters()) for (int i = 0; i < p.length; i++) p[i] = (float) (1 + 3 * rnd.nextDouble());

        float[] trained = obj.evaluate(TestBlocks.BE, x, target, BATCH, SEQ, false, true).output();
        CalibratedBlock cb = obj.fold(TestBlocks.BE);
        float[] stored = TestBlocks.forward(cb.block(), x, BATCH, SEQ);
        double err = relativeError(stored, trained);
        assertTrue(err < 1e-5, family + ": stored block differs from the trained one by " + err);
        for (Linear l : cb.block().linears()) {
            QuantizedLinear q = (QuantizedLinear) cb.layers().get(l.name());
            assertArrayEquals(q.dequantize(), l.weight().toFloats(), l.name());
            assertTrue(l.inputBits() == 6, l.name() + " quantizes its input");
            for (int v : q.levels()) assertTrue(v >= 0 && v <= 7);
        }
        assertTrue(cb.layers().keySet().equals(new java.util.LinkedHashSet<>(block.linears().stream().map(Linear::name).toList())));
    }
}
