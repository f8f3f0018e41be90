package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.algo.GptqCalibrator;
import io.blockquant.algo.GptqSettings;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.algo.LorcSettings;
import io.blockquant.algo.WeightFormat;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.TensorBackend;
import org.junit.jupiter.api.Test;

/** A Hessian that damping does not make positive definite fails as the user's to fix, naming block, layer and setting. */
class HessianFactorTest {

    private static final TensorBackend BE = Nd4jBackend.INSTANCE;

    /**
     * Two tokens over 64 channels: Σxᵀx has rank 2 and a non-zero diagonal (no dead channel for GPTQ to mend), so
     * without damping its Cholesky factor does not exist.
     */
    private static HessianAccumulator singular() {
        float[] x = new float[2 * 64];
        java.util.Random rnd = new java.util.Random(5);
        for (int i = 0; i < x.length; i++) x[i] = 1 + rnd.nextFloat();
        HessianAccumulator h = new HessianAccumulator(64);
        h.add(BE.fromFloats(x, 2, 64));
        return h;
    }

    private static GptqCalibrator gptq(double damp) {
        return new GptqCalibrator(new GptqSettings(new WeightFormat(new IntQuantSpec(4, 0, false), null), damp, false, false, LorcSettings.NONE));
    }

    @Test
    void anUndampedSingularHessianNamesTheBlockLayerAndDamping() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> BlockWork.prepare(gptq(0), BE, singular(), 3, "mlp.down_proj"));
        assertTrue(e.getMessage().startsWith("block 3 mlp.down_proj: GPTQ cannot factor its input Hessian ("), e.getMessage());
        assertTrue(e.getMessage().contains("raise --damp"), e.getMessage());
    }

    @Test
    void dampingMakesTheSameHessianFactorable() {
        assertNotNull(BlockWork.prepare(gptq(0.01), BE, singular(), 3, "mlp.down_proj"));
    }
}
