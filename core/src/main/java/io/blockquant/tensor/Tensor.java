package io.blockquant.tensor;

import java.util.Arrays;

/**
 * A dense, row-major float32 tensor owned by a {@link TensorBackend}. Algorithms hold tensors only
 * through this type, so the same code runs on the CPU (ND4J) and on the CUDA backend.
 *
 * <p>{@link #close()} releases the tensor's memory now (device memory on a GPU backend); a tensor that
 * is never closed is reclaimed by its backend's normal means (the garbage collector on the CPU).
 */
public interface Tensor extends AutoCloseable {

    long[] shape();

    TensorBackend backend();

    default int rank() {
        return shape().length;
    }

    default long size(int dim) {
        long[] s = shape();
        return s[dim < 0 ? s.length + dim : dim];
    }

    default long length() {
        long n = 1;
        for (long d : shape()) n *= d;
        return n;
    }

    /** The elements, row-major, copied to the Java heap. */
    default float[] toFloats() {
        return backend().toFloats(this);
    }

    default String describe() {
        return "float32" + Arrays.toString(shape());
    }

    @Override
    void close();
}
