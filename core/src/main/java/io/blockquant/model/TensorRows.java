package io.blockquant.model;

/**
 * A 2-D tensor read by ranges of rows: how an embedding or output head of a real model (a Llama-3-8B one is
 * 2.1 GB in float32) is used without any JVM holding it whole.
 */
public interface TensorRows {

    /** The tensor's name, for errors. */
    String name();

    long rows();

    long cols();

    /** Rows {@code [from, from + count)} as float32, row-major. */
    float[] readRows(long from, int count);

    /** Rows per read that keep one read near {@code bytes} of float32 (at least one row). */
    default int rowsPerRead(long bytes) {
        return (int) Math.max(1, Math.min(rows(), bytes / (4 * Math.max(1, cols()))));
    }
}
