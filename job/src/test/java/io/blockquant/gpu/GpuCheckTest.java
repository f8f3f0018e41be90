package io.blockquant.gpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.cuda.CudaBackend;
import io.blockquant.tensor.Nd4jBackend;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class GpuCheckTest {

    private static final Path FIXTURES = Path.of("..", "data-samples");

    /** The GPU check's correctness phase: every CheckCases output of the CUDA backend against the CPU backend's. */
    @Test
    void cudaBackendMatchesCpuBackend() throws Exception {
        String why = CudaBackend.unavailableReason();
        Assumptions.assumeTrue(why == null, "skipped, the CUDA backend cannot run here: " + why);
        ArrayBundle inputs = GpuCheckReference.inputs(FIXTURES.resolve("models"), FIXTURES.resolve("corpus"));
        ArrayBundle reference = new ArrayBundle();
        CheckCases.compute(Nd4jBackend.INSTANCE, inputs, null).forEach((n, v) -> reference.putFloats(n, v, v.length));
        assertTrue(GpuCheck.correctness(CudaBackend.forDevice(0), inputs, reference), "see the table printed above");
    }

    @Test
    void bundleKeepsEveryArrayExactly(@TempDir Path dir) throws Exception {
        float[] bf16 = {1f, -2.5f, 0f, -0f, 3.140625f};                    // stored in 2 bytes each
        float[] f32 = {1.1f, Float.MIN_VALUE, Float.NaN, -7e30f};
        int[] ints = {0, -1, Integer.MAX_VALUE};
        byte[] bytes = {1, 2, -3};
        Path file = dir.resolve("a.bqa");
        new ArrayBundle().putFloats("a/bf16", bf16, 5).putFloats("f32", f32, 2, 2).putInts("i", ints, 3)
                .putBytes("b", bytes).write(file);
        ArrayBundle back = ArrayBundle.read(file);
        assertArrayEquals(bf16, back.floats("a/bf16"));
        assertArrayEquals(f32, back.floats("f32"));
        assertArrayEquals(new long[] {2, 2}, back.shape("f32"));
        assertArrayEquals(ints, back.ints("i"));
        assertArrayEquals(bytes, back.bytes("b"));
        assertTrue(Files.size(file) < 8 + 4 * (5 + 4 + 3) + 3 + 80, "bf16 values take 2 bytes");
    }

    @Test
    void comparisonMeasuresAgainstTheLargestReferenceValue() {
        GpuCheck.Comparison same = GpuCheck.Comparison.of(new float[] {1f, 2f}, new float[] {1f, 2f});
        assertEquals(0.0, same.relError());
        GpuCheck.Comparison off = GpuCheck.Comparison.of(new float[] {1f, 4.001f}, new float[] {1f, 4f});
        assertEquals(0.001 / 4, off.relError(), 1e-6);
        assertEquals(1, off.differing());
        GpuCheck.Comparison nan = GpuCheck.Comparison.of(new float[] {Float.NaN}, new float[] {1f});
        assertFalse(nan.relError() <= GpuCheck.TOLERANCE);
        assertFalse(nan.normError() <= GpuCheck.GPTQ_OUTPUT_NORM);
    }

    @Test
    void gptqOutputsAreJudgedByTheirNormNotByFlippedElements() {
        // 3 of 1000 weights moved by one step of 0.25 on values of about 1: many elements beyond the elementwise
        // tolerance, yet ‖Δ‖/‖ref‖ = sqrt(3 · 0.0625 / 1000) ≈ 1.4e-2, within the weights' bound
        float[] ref = new float[1000], got = new float[1000];
        for (int i = 0; i < ref.length; i++) ref[i] = got[i] = (i % 2 == 0 ? 1f : -1f);
        for (int i : new int[] {10, 500, 900}) got[i] += 0.25f;
        GpuCheck.Comparison c = GpuCheck.Comparison.of(got, ref);
        assertEquals(3, c.differing());
        assertEquals(Math.sqrt(3 * 0.0625 / 1000), c.normError(), 1e-9);
        assertTrue(c.normError() <= GpuCheck.GPTQ_WEIGHT_NORM);
        assertFalse(c.normError() <= GpuCheck.GPTQ_OUTPUT_NORM);
    }
}
