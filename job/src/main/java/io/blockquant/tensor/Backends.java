package io.blockquant.tensor;

import io.blockquant.cuda.CudaBackend;

/**
 * Which backend an executor task computes on: {@code -Dblockquant.backend=cpu} (the default, ND4J) or
 * {@code cuda} (the CUDA backend on the GPU Spark assigned to the task; set the property through
 * {@code spark.executor.extraJavaOptions}).
 */
public final class Backends {

    private Backends() {}

    public static final String PROPERTY = "blockquant.backend";

    /**
     * The selected backend for a task; {@code gpuAddress} is the task's GPU resource address (a CUDA device
     * ordinal, e.g. {@code TaskContext.resources().get("gpu").addresses()[0]}), or null for device 0.
     */
    /** Whether {@code -Dblockquant.backend=cuda} asks for the CUDA backend. */
    public static boolean cudaSelected() {
        return "cuda".equals(System.getProperty(PROPERTY, "cpu").trim());
    }

    public static TensorBackend forTask(String gpuAddress) {
        String choice = System.getProperty(PROPERTY, "cpu").trim();
        switch (choice) {
            case "cpu":
                return Nd4jBackend.INSTANCE;
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
}
