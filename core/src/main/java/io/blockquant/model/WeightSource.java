package io.blockquant.model;

import java.util.Set;

/** Where a model's named float tensors come from: a checkpoint, or the dequantized tensors of a store. */
public interface WeightSource {

    boolean has(String tensor);

    Set<String> tensorNames();

    /** The tensor as float32, checked against {@code expectedShape} when one is given. */
    float[] readFloats(String tensor, long... expectedShape);

    /** A 2-D tensor read by rows: a checkpoint reads only those rows; tensors already in memory are sliced. */
    default TensorRows rows(String tensor, long... expectedShape) {
        float[] v = readFloats(tensor, expectedShape);
        long rows = expectedShape[0], cols = expectedShape[1];
        return new TensorRows() {
            public String name() { return tensor; }
            public long rows() { return rows; }
            public long cols() { return cols; }
            public float[] readRows(long from, int count) {
                return java.util.Arrays.copyOfRange(v, (int) (from * cols), (int) ((from + count) * cols));
            }
        };
    }
}
