package io.blockquant.nn;

import io.blockquant.quant.FpFormat;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.function.Consumer;

/**
 * A linear layer {@code y = x·Wᵀ + b} as Hugging Face stores it ({@code weight [out, in]}, optional bias),
 * named by its module path inside the block (e.g. {@code self_attn.q_proj}). {@code inputBits > 0} makes
 * its input pass through dynamic per-token symmetric INT fake quantization first (the A of W8A8);
 * {@code inputFormat}, when set, makes it dynamic per-token FP8 fake quantization instead (ZeroQuant-FP's A8);
 * {@code inputTap}, when set, sees that input (how calibration collects a layer's Hessian).
 */
public record Linear(String name, Tensor weight, Tensor bias, int inputBits, FpFormat inputFormat,
                     Consumer<Tensor> inputTap) {

    public Linear(String name, Tensor weight, Tensor bias) {
        this(name, weight, bias, 0, null, null);
    }

    public Linear(String name, Tensor weight, Tensor bias, int inputBits, Consumer<Tensor> inputTap) {
        this(name, weight, bias, inputBits, null, inputTap);
    }

    public int outFeatures() {
        return (int) weight.size(0);
    }

    public int inFeatures() {
        return (int) weight.size(1);
    }

    public Tensor forward(Tensor x) {
        TensorBackend be = weight.backend();
        Tensor in = inputFormat != null ? be.fakeQuantizeTokensFp(x, inputFormat)
                : inputBits > 0 ? be.fakeQuantizeTokens(x, inputBits) : x;
        if (inputTap != null) inputTap.accept(in);
        Tensor y = be.matmul(in, weight, false, true);
        return bias == null ? y : be.addRowVector(y, bias);
    }

    public Linear withWeight(Tensor newWeight) {
        return new Linear(name, newWeight, bias, inputBits, inputFormat, inputTap);
    }

    public Linear withInputBits(int bits) {
        return new Linear(name, weight, bias, bits, inputFormat, inputTap);
    }

    /** The same layer, handing every input it sees (after activation quantization) to {@code tap}: a forward hook. */
    public Linear withInputTap(Consumer<Tensor> tap) {
        return new Linear(name, weight, bias, inputBits, inputFormat, tap);
    }

    /** The same layer with dynamic per-token FP activation quantization of its input (null: none). */
    public Linear withInputFormat(FpFormat format) {
        return new Linear(name, weight, bias, inputBits, format, inputTap);
    }
}
