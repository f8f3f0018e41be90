package io.blockquant.tensor;

import io.blockquant.cuda.CudaBackend;

/**
 * The one place a backend is chosen. Spark tasks follow {@code -Dblockquant.backend=cpu} (the default, ND4J)
 * or {@code cuda} (the CUDA backend on the GPU Spark assigned to the task; set the property through
 * {@code spark.executor.extraJavaOptions}); the GPU runners of {@code io.blockquant.gpu} follow
 * {@code -Dgpu.backend} and {@code -Dgpu.device}; everything else computes on the CPU.
 *
 * <p>The GPU payload carries no ND4J: naming {@link Nd4jBackend} here loads it only when the CPU is chosen.
 */
public final class Backends {

    private Backends() {}

    public static final String PROPERTY = "blockquant.backend";

    /** The GPU runners' choice: {@code cpu} runs them on the CPU backend, anything else (or nothing) on CUDA. */
    public static final String RUNNER_PROPERTY = "gpu.backend";

    /** The GPU runners' CUDA device ordinal (default 0). */
    public static final String RUNNER_DEVICE_PROPERTY = "gpu.device";

    /**
     * The CPU backend (ND4J): the driver's work, loaders asked only for tensor names, evaluation tasks, and
     * the reference the CUDA backend is checked against.
     */
    public static TensorBackend cpu() {
        return Nd4jBackend.INSTANCE;
    }

    /** Whether {@code -Dblockquant.backend=cuda} asks for the CUDA backend. */
    public static boolean cudaSelected() {
        return "cuda".equals(System.getProperty(PROPERTY, "cpu").trim());
    }

    /**
     * The selected backend for a Spark task; {@code gpuAddress} is the task's GPU resource address (a CUDA
     * device ordinal, e.g. {@code TaskContext.resources().get("gpu").addresses()[0]}), or null for device 0.
     */
    public static TensorBackend forTask(String gpuAddress) {
        String choice = System.getProperty(PROPERTY, "cpu").trim();
        switch (choice) {
            case "cpu":
                return cpu();
            case "cuda": {
                int device;
                try {
                    device = gpuAddress == null ? 0 : Integer.parseInt(gpuAddress.trim());
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("GPU address '" + gpuAddress + "' is not a CUDA device ordinal");
                }
                return CudaBackend.forDevice(device);
            }
            default:
                throw new IllegalArgumentException("-D" + PROPERTY + "=" + choice + ": expected cpu or cuda");
        }
    }

    /**
     * The backend of a GPU runner (one JVM on a GPU machine, no Spark): CUDA device {@code -Dgpu.device}
     * (default 0), or the CPU backend with {@code -Dgpu.backend=cpu}.
     */
    public static TensorBackend forGpuRunner() {
        if ("cpu".equals(System.getProperty(RUNNER_PROPERTY))) return cpu();
        return CudaBackend.forDevice(Integer.getInteger(RUNNER_DEVICE_PROPERTY, 0));
    }
}
