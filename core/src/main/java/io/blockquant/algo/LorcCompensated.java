package io.blockquant.algo;

/**
 * A quantized weight with its LoRC factors kept beside it (ZeroQuant-V2/FP): the layer computes with
 * {@code Ŵ + U·V}, the rank-r approximation of its quantization error added back.
 */
public record LorcCompensated(StoredWeight base, Lorc.Factors factors) implements StoredWeight {

    @Override
    public int rows() {
        return base.rows();
    }

    @Override
    public int cols() {
        return base.cols();
    }

    @Override
    public float[] dequantize() {
        return factors.compensate(base.dequantize());
    }

    @Override
    public double loss() {
        return base.loss();
    }
}
