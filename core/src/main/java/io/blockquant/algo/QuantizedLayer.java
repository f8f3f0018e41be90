package io.blockquant.algo;

import io.blockquant.tensor.Tensor;

/**
 * A linear layer as calibration leaves it: the weight as the store keeps it, and the weight the block computes with
 * from then on (its dequantized values), as a tensor of the backend that quantized it. On a GPU that tensor is the
 * column loop's own output, so the layer's weights never cross the bus to be dequantized on the heap.
 */
public record QuantizedLayer(StoredWeight stored, Tensor weight) {

    /** {@code q} with its dequantized weight put on {@code like}'s backend, in {@code like}'s shape. */
    public static QuantizedLayer of(StoredWeight q, Tensor like) {
        return new QuantizedLayer(q, like.backend().fromFloats(q.dequantize(), like.shape()));
    }
}
