package io.blockquant.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.cuda.CudaBackend;
import io.blockquant.tensor.Backends.Choice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class BackendsTest {

    @AfterEach
    void clear() {
        System.clearProperty(Backends.PROPERTY);
        System.clearProperty(Backends.CHECK_PROPERTY);
    }

    @Test
    void cpuWhenAskedOrWhenAutoFindsNoGpu() {
        assertSame(Nd4jBackend.INSTANCE, Backends.cpu());
        assertSame(Backends.cpu(), Backends.choose(Choice.CPU, "0", true));
        // a cluster executor that Spark gave no GPU never probes
        assertSame(Backends.cpu(), Backends.choose(Choice.AUTO, null, false));
        if (!CudaBackend.isAvailable()) assertSame(Backends.cpu(), Backends.choose(Choice.AUTO, null, true));
    }

    @Test
    void choiceParsesFlagsKeysAndTheProperty() {
        assertEquals(Choice.AUTO, Choice.fromProperty());
        System.setProperty(Backends.PROPERTY, "cuda");
        assertEquals(Choice.CUDA, Choice.fromProperty());
        assertEquals(Choice.CPU, Choice.parse(" CPU ", "--backend"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Choice.parse("tpu", "--backend"));
        assertEquals("--backend 'tpu': expected cpu, cuda or auto", e.getMessage());
    }

    @Test
    void gpuCheckOnTheCpuWhenAsked() {
        System.setProperty(Backends.CHECK_PROPERTY, "cpu");
        assertSame(Backends.cpu(), Backends.forGpuCheck());
    }

    /** cuda asked for, or auto on a Spark-assigned GPU: CUDA or one line naming host, GPU address and cause. */
    @Test
    void cudaThatCannotRunSaysWhereAndWhy() {
        for (Choice c : new Choice[] {Choice.CUDA, Choice.AUTO}) {
            assertTrue(Backends.choosesCuda(c, "0", false));
            if (CudaBackend.isAvailable()) {
                assertTrue(Backends.choose(c, "0", false).name().startsWith("cuda:"));
            } else {
                Backends.UnavailableException e = assertThrows(Backends.UnavailableException.class, () -> Backends.choose(c, "0", false));
                assertTrue(e.getMessage().startsWith("CUDA backend unavailable on host " + Backends.host() + ", GPU 0: "), e.getMessage());
                assertFalse(e.getMessage().contains("\n"), e.getMessage());
            }
        }
        Backends.UnavailableException e = assertThrows(Backends.UnavailableException.class, () -> Backends.choose(Choice.CUDA, "gpu-a", false));
        assertTrue(e.getMessage().contains("GPU address 'gpu-a' is not a CUDA device ordinal"), e.getMessage());
    }
}
