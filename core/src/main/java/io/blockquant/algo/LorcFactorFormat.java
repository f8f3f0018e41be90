package io.blockquant.algo;

/**
 * How LoRC's low-rank factors are kept: full float32, rounded to float16, or fake-quantized to FP8 E4M3 with
 * one absmax scale per factor row (per output channel for U, per rank component for V).
 */
public enum LorcFactorFormat {
    FP32, FP16, FP8
}
