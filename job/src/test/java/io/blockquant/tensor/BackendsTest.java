package io.blockquant.tensor;

import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.cuda.CudaBackend;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class BackendsTest {

    @AfterEach
    void clear() {
        System.clearProperty(Backends.PROPERTY);
        System.clearProperty(Backends.RUNNER_PROPERTY);
    }

    @Test
    void cpuByDefault() {
        assertSame(Nd4jBackend.INSTANCE, Backends.cpu());
        assertSame(Backends.cpu(), Backends.forTask("0"));
    }

    @Test
    void gpuRunnerOnTheCpuWhenAsked() {
        System.setProperty(Backends.RUNNER_PROPERTY, "cpu");
        assertSame(Backends.cpu(), Backends.forGpuRunner());
    }

    @Test
    void gpuRunnerOnCudaByDefault() {
        if (CudaBackend.isAvailable()) {
            assertTrue(Backends.forGpuRunner().name().startsWith("cuda:"));
        } else {
            IllegalStateException e = assertThrows(IllegalStateException.class, Backends::forGpuRunner);
            assertTrue(e.getMessage().contains("CUDA backend unavailable"), e.getMessage());
        }
    }

    @Test
    void cudaWithoutAGpuSaysWhy() {
        System.setProperty(Backends.PROPERTY, "cuda");
        if (CudaBackend.isAvailable()) {
            assertTrue(Backends.forTask("0").name().startsWith("cuda:"));
        } else {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> Backends.forTask("0"));
            assertTrue(e.getMessage().contains("CUDA backend unavailable"), e.getMessage());
        }
    }

    @Test
    void unknownBackendOrAddressIsRefused() {
        System.setProperty(Backends.PROPERTY, "tpu");
        assertThrows(IllegalArgumentException.class, () -> Backends.forTask(null));
        System.setProperty(Backends.PROPERTY, "cuda");
        assertThrows(IllegalArgumentException.class, () -> Backends.forTask("gpu-a"));
    }
}
