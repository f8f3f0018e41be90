package io.blockquant.tensor;

/** Element-wise non-linearities used by the supported MLPs. */
public enum Activation {
    RELU,
    /** x·sigmoid(x), Llama's SwiGLU gate. */
    SILU,
    /** The exact GELU, x·Φ(x) with the error function (Falcon's "gelu"). */
    GELU,
    /** The tanh approximation of GELU ("gelu_new", "gelu_pytorch_tanh"). */
    GELU_TANH;

    /** Maps a Hugging Face activation name ({@code hidden_act}, {@code activation_function}). */
    public static Activation fromHuggingFace(String name) {
        switch (name) {
            case "relu": return RELU;
            case "silu": case "swish": return SILU;
            case "gelu": return GELU;
            case "gelu_new": case "gelu_pytorch_tanh": case "gelu_fast": return GELU_TANH;
            default: throw new IllegalArgumentException("unsupported activation '" + name
                    + "' (expected relu, silu, gelu, gelu_new or gelu_pytorch_tanh)");
        }
    }
}
