package io.blockquant.algo;

import java.io.Serializable;

/**
 * A linear layer's weight in the form a model store keeps it: integer levels ({@link QuantizedLinear}), FP
 * codes ({@link FpQuantizedLinear}), either with low-rank compensation ({@link LorcCompensated}).
 */
public interface StoredWeight extends Serializable {

    int rows();

    int cols();

    /** The weight the model computes with, row-major {@code [rows, cols]}. */
    float[] dequantize();

    /** The solver's own objective (GPTQ's loss; 0 for RTN). */
    double loss();
}
