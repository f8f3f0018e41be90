package io.blockquant.algo.omniquant;

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
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The backward pass (block graph, LWC, LET, STE) against central finite differences of the float64
 * {@link ReferenceObjective}, for every kind of learnable parameter and all three families: symmetric per-token
 * linear inputs (W8A8's rule), asymmetric ones (the OmniQuant reference's), quantized queries, keys and values
 * (its QuantMatMul, where the query/key scale gets a gradient), and a quantized KV cache alone; for Llama with
 * activations quantized, also the up→down scale ({@code --let-down}).
 */
class OmniQuantGradientTest {

    static final String[] LET_NAMES = {"attnScale", "attnShift", "mlpScale", "mlpShift", "outScale", "outShift", "qkScale", "downScale"};

    @ParameterizedTest(name = "{0} W{1} g{2} A{3} asym {4} qkv {5} kv {6}")
    @CsvSource({
        "LLAMA, 3, 0, 16, false, false, 0",
        "LLAMA, 4, 8, 6, false, false, 0",
        "OPT, 3, 0, 16, false, false, 0",
        "OPT, 4, 0, 6, false, false, 0",
        "FALCON, 3, 0, 16, false, false, 0",
        "FALCON, 4, 8, 6, false, false, 0",
        "LLAMA, 4, 0, 6, true, false, 0",
        "LLAMA, 4, 8, 4, true, true, 0",
        "OPT, 4, 0, 4, true, true, 0",
        "FALCON, 4, 0, 6, true, true, 0",
        "LLAMA, 3, 0, 16, false, false, 4",
        "OPT, 4, 0, 16, false, false, 8"})
    void gradientsMatchFiniteDifferences(Family family, int wbits, int group, int abits, boolean asym, boolean qkv, int kvBits) {
        ActivationQuant acts = ActivationQuant.of(abits, null, asym, qkv, kvBits, null);
        int batch = 2, seq = 5;
        ModelSpec spec = TestBlocks.spec(family, 16, 4, 2, 24, true);
        DecoderBlock block = TestBlocks.block(spec, 11);
        Random rnd = new Random(5);
        float[] x = TestBlocks.inputs(rnd, batch * seq, 16);
        float[] target = TestBlocks.forward(block, x, batch, seq);
        for (int i = 0; i < target.length; i++) target[i] += (float) (0.05 * rnd.nextGaussian());

        HeapBlock fp = HeapBlock.of(block);
        boolean down = family == Family.LLAMA && abits < 16;
        EquivalentTransform let = new EquivalentTransform(fp, abits < 16, abits < 16 || kvBits > 0, down);
        OmniQuantObjective prod = new OmniQuantObjective(fp, let, new IntQuantSpec(wbits, group, false), true, acts);
        // parameters away from their start: clipping that cuts, non-trivial scales and shifts
        for (float[] p : prod.lwcParameters()) for (int i = 0; i < p.length; i++) p[i] = (float) (0.5 + 3 * rnd.nextDouble());
        for (float[] s : let.scales()) for (int i = 0; i < s.length; i++) s[i] = (float) Math.exp(0.3 * rnd.nextGaussian());
        for (float[] d : new float[][] {let.attnShift, let.mlpShift, let.outShift}) {
            if (d != null) for (int i = 0; i < d.length; i++) d[i] = (float) (0.2 * rnd.nextGaussian());
        }

        OmniQuantObjective.Evaluation ev = prod.evaluate(TestBlocks.BE, x, target, batch, seq, true, false);
        ReferenceObjective ref = new ReferenceObjective(fp, prod, x, target, wbits, group, acts, batch, seq);
        double base = ref.loss();
        assertEquals(base, ev.loss(), 1e-4 * base, "the float32 loss and the float64 reference agree");

        List<float[]> grads = new ArrayList<>(ev.lwcGrads());
        grads.addAll(ev.letGrads());
        List<String> names = new ArrayList<>();
        for (HeapBlock.Layer l : fp.layers) {
            names.add(l.name() + ".gamma");
            names.add(l.name() + ".beta");
        }
        float[][] letVectors = {let.attnScale, let.attnShift, let.mlpScale, let.mlpShift, let.outScale, let.outShift, let.qkScale,
            let.downScale};
        for (int i = 0; i < letVectors.length; i++) if (letVectors[i] != null) names.add(LET_NAMES[i]);
        assertEquals(ref.params.size(), grads.size());
        if (abits < 16 || kvBits > 0) {
            assertTrue(names.contains("qkScale") && names.contains("outScale") && names.contains("attnScale"));
            if (family != Family.LLAMA && abits < 16) assertTrue(names.contains("attnShift") && names.contains("outShift"), names.toString());
            assertEquals(down, names.contains("downScale"), names.toString());
        }

        // Tolerance: the analytic gradient is computed in float32 (relative rounding ~1e-6 per operation,
        // accumulated over sums of ≤ 100 terms), the central difference of the float64 reference with
        // h = 1e-6 is exact to ~1e-8; 2e-3 of the vector's largest gradient absorbs the first and still
        // fails on any missing or wrong term (those are of the order of the gradient itself).
        double h = 1e-6;
        double[][] fds = new double[grads.size()][];
        double[] scales = new double[grads.size()];
        double global = 0;
        for (int k = 0; k < grads.size(); k++) {
            double[] p = ref.params.get(k);
            fds[k] = io.blockquant.FiniteDifferences.central(p, h, ref::loss);
            for (double d : fds[k]) scales[k] = Math.max(scales[k], Math.abs(d));
            global = Math.max(global, scales[k]);
        }
        for (int k = 0; k < grads.size(); k++) {
            String name = names.get(k);
            if (name.equals("qkScale") && acts.attention().key() == null) {
                // Row-wise weight quantization is equivariant to scaling a row, and the block does not quantize
                // query/key states, so q/s·(k·s) leaves the loss unchanged: both gradients vanish.
                assertTrue(scales[k] < 1e-6 * global, "qkScale finite differences " + scales[k]);
            } else {
                assertTrue(scales[k] > 1e-4 * global, name + ": the loss barely depends on it (" + scales[k] + ")");
            }
            float[] g = grads.get(k);
            double tol = 2e-3 * Math.max(scales[k], 1e-3 * global);
            for (int i = 0; i < g.length; i++) {
                assertEquals(fds[k][i], g[i], tol, name + "[" + i + "]: analytic " + g[i] + " vs finite difference " + fds[k][i]);
            }
        }
    }
}
