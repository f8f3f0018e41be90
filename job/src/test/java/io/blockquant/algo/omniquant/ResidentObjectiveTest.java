package io.blockquant.algo.omniquant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.model.Family;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.quant.IntQuantSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The objective resident on the backend: its learned vectors come back to the heap exactly (Falcon's fused
 * query_key_value is held as three row subsets there), and a step over several windows ({@code --batch-size})
 * has the gradient of the mean of the windows' losses, i.e. the mean of their single-window gradients.
 */
class ResidentObjectiveTest {

    private static OmniQuantObjective objective(Family family, Random rnd) {
        ModelSpec spec = TestBlocks.spec(family, 16, 4, 2, 24, true);
        DecoderBlock block = TestBlocks.block(spec, 21);
        HeapBlock fp = HeapBlock.of(block);
        EquivalentTransform let = new EquivalentTransform(fp, true, true, fp.spec.family().descriptor().gatedMlp());
        OmniQuantObjective obj = new OmniQuantObjective(fp, let, new IntQuantSpec(4, 8, false), true,
                ActivationQuant.of(6, null, true, false, 0, null));
        for (float[] p : obj.lwcParameters()) for (int i = 0; i < p.length; i++) p[i] = (float) (0.5 + 3 * rnd.nextDouble());
        for (float[] s : let.scales()) for (int i = 0; i < s.length; i++) s[i] = (float) Math.exp(0.3 * rnd.nextGaussian());
        for (float[] d : new float[][] {let.attnShift, let.mlpShift, let.outShift}) {
            if (d != null) for (int i = 0; i < d.length; i++) d[i] = (float) (0.2 * rnd.nextGaussian());
        }
        return obj;
    }

    @ParameterizedTest
    @EnumSource(Family.class)
    void downloadGivesBackExactlyWhatWasUploaded(Family family) {
        OmniQuantObjective obj = objective(family, new Random(1));
        List<float[]> before = new ArrayList<>();
        for (float[] v : obj.learned().values()) before.add(v.clone());
        try (ResidentObjective r = obj.resident(TestBlocks.BE)) {
            for (float[] v : obj.learned().values()) java.util.Arrays.fill(v, 0f);
            r.download();
        }
        List<float[]> after = new ArrayList<>(obj.learned().values());
        assertEquals(before.size(), after.size());
        for (int i = 0; i < before.size(); i++) assertArrayEquals(before.get(i), after.get(i), "vector " + i);
    }

    @ParameterizedTest
    @EnumSource(Family.class)
    void severalWindowsPerStepAverageTheirGradients(Family family) {
        Random rnd = new Random(2);
        OmniQuantObjective obj = objective(family, rnd);
        int seq = 5, h = 16, width = seq * h;
        float[] x = TestBlocks.inputs(rnd, 2 * seq, h);
        float[] target = TestBlocks.inputs(rnd, 2 * seq, h);
        OmniQuantObjective.Evaluation both = obj.evaluate(TestBlocks.BE, x, target, 2, seq, true, false);
        OmniQuantObjective.Evaluation[] one = new OmniQuantObjective.Evaluation[2];
        for (int w = 0; w < 2; w++) {
            one[w] = obj.evaluate(TestBlocks.BE, java.util.Arrays.copyOfRange(x, w * width, (w + 1) * width),
                    java.util.Arrays.copyOfRange(target, w * width, (w + 1) * width), 1, seq, true, false);
        }
        assertEquals((one[0].loss() + one[1].loss()) / 2, both.loss(), 1e-6 * both.loss(), "the loss is the windows' mean");
        List<float[]> gBoth = new ArrayList<>(both.lwcGrads()), g0 = new ArrayList<>(one[0].lwcGrads()), g1 = new ArrayList<>(one[1].lwcGrads());
        gBoth.addAll(both.letGrads());
        g0.addAll(one[0].letGrads());
        g1.addAll(one[1].letGrads());
        assertEquals(gBoth.size(), g0.size());
        double global = 0;
        for (float[] g : gBoth) for (float v : g) global = Math.max(global, Math.abs(v));
        assertTrue(global > 1e-3, "gradients are not vacuous");
        for (int k = 0; k < gBoth.size(); k++) {
            for (int i = 0; i < gBoth.get(k).length; i++) {
                double mean = (g0.get(k)[i] + (double) g1.get(k)[i]) / 2;
                // float32 sums over different row sets: rounding of ~1e-6 of the largest gradient
                assertEquals(mean, gBoth.get(k)[i], 1e-5 * global, "vector " + k + "[" + i + "]");
            }
        }
    }
}
