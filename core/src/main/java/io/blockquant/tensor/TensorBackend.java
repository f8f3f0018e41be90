package io.blockquant.tensor;

/**
 * A whole backend: every role an algorithm may depend on, which both the CPU implementation
 * ({@link Nd4jBackend}) and the CUDA one ({@code io.blockquant.cuda.CudaBackend}) implement. Code that
 * uses one role only takes that role ({@link ForwardOps}, {@link GradientOps}, {@link FakeQuantOps},
 * {@link OptimizerOps}, {@link LinearAlgebra}); {@link Backends} is where a backend is chosen.
 */
public interface TensorBackend extends ForwardOps, GradientOps, FakeQuantOps, OptimizerOps, LinearAlgebra {

    String name();

    /** The unfused backward of {@link #gatedActivation} (a backend that fuses the forward fuses this too). */
    @Override
    default Tensor[] gatedActivationBackward(Tensor gate, Tensor up, Tensor dy, Activation activation) {
        return new Tensor[] {activationBackward(gate, mul(dy, up), activation), mul(dy, activate(gate, activation))};
    }

    /**
     * Makes the calling thread's work run on the GPU Spark assigned to its task ({@code address}: the index
     * {@code cluster/gpu/discover-gpus.sh} reported, as nvidia-smi numbers the GPUs). A backend without
     * devices ignores it, as the CPU backend does.
     */
    default void bindDevice(String address) {}

    /**
     * Called when a task that computed on this thread ends: gives back what the backend keeps per thread for
     * reuse (ND4J's scratch workspaces). A backend that keeps nothing per thread ignores it.
     */
    default void endTask() {}

    /** Waits for the work this thread queued on the device (timings); a backend that computes synchronously returns. */
    default void synchronize() {}

    /** True when tensors live in device memory (a GPU), not on the Java heap or in host memory. */
    default boolean onDevice() {
        return false;
    }

    /** Bytes of device memory free now; 0 where tensors do not live on a device. */
    default long freeDeviceMemory() {
        return 0;
    }

    /**
     * Float32 products through TF32 tensor cores (inputs rounded to 10 mantissa bits, float32 accumulation) on this
     * thread, where the backend has them (CUDA); exact float32 otherwise.
     */
    default void useTf32(boolean on) {}

    /** Runs {@code work} with exact float32 products on this thread, whatever {@link #useTf32} said (factorizations). */
    default <T> T exactFloat32(java.util.function.Supplier<T> work) {
        return work.get();
    }

    /** A running {@code Σ xᵀx} kept in this backend's device memory; null where tensors live on the heap. */
    default GramSum deviceGramSum(int columns) {
        return null;
    }
}
