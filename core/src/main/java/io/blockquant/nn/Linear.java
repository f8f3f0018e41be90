package io.blockquant.nn;

import io.blockquant.quant.FpFormat;
import io.blockquant.quant.TokenQuant;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.function.Consumer;

/**
 * A linear layer {@code y = x·Wᵀ + b} as Hugging Face stores it ({@code weight [out, in]}, optional bias),
 * named by its module path inside the block (e.g. {@code self_attn.q_proj}). {@code input}, when set, makes
 * its input pass through dynamic per-token fake quantization first (the A of W8A8 or W4A4: symmetric or
 * asymmetric INT, or ZeroQuant-FP's FP8); {@code inputTap}, when set, sees that input (how calibration collects
 * a layer's Hessian).
 */
public record Linear(String name, Tensor weight, Tensor bias, TokenQuant input, Consumer<Tensor> inputTap) {

    public Linear(String name, Tensor weight, Tensor bias) {
        this(name, weight, bias, null, null);
    }

    public int outFeatures() {
        return (int) weight.size(0);
    }

    public int inFeatures() {
        return (int) weight.size(1);
    }

    /** The input's bits, 0 when it is not quantized. */
    public int inputBits() {
        return input == null ? 0 : input.bits();
    }

    public Tensor forward(Tensor x) {
        TensorBackend be = weight.backend();
        Tensor in = be.fakeQuantizeTokens(x, input);
        if (inputTap != null) inputTap.accept(in);
        Tensor y = be.matmul(in, weight, false, true);
        return bias == null ? y : be.addRowVector(y, bias);
    }

    public Linear withWeight(Tensor newWeight) {
        return new Linear(name, newWeight, bias, input, inputTap);
    }

    /** The same layer with its input quantized by {@code q} (null: not at all). */
    public Linear withInput(TokenQuant q) {
        return new Linear(name, weight, bias, q, inputTap);
    }

    /** Symmetric per-token INT input quantization of {@code bits} (0: none), the W8A8 rule. */
    public Linear withInputBits(int bits) {
        return withInput(bits > 0 ? TokenQuant.integer(bits, false) : null);
    }

    /** The same layer, handing every input it sees (after activation quantization) to {@code tap}: a forward hook. */
    public Linear withInputTap(Consumer<Tensor> tap) {
        return new Linear(name, weight, bias, input, tap);
    }

    /** The same layer with dynamic per-token FP activation quantization of its input (null: none). */
    public Linear withInputFormat(FpFormat format) {
        return withInput(format == null ? null : TokenQuant.fp8(format));
    }
}
