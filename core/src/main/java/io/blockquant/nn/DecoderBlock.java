package io.blockquant.nn;

import io.blockquant.model.ModelSpec;
import io.blockquant.quant.AttentionQuant;
import io.blockquant.tensor.Tensor;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * One transformer block: hidden states {@code [batch·seq, hidden]} in, hidden states out. The unit every
 * calibration algorithm works on.
 */
public interface DecoderBlock {

    Tensor forward(Tensor hidden, int batch, int seq);

    ModelSpec spec();

    /** The norm in front of attention (Llama's input_layernorm, OPT's self_attn_layer_norm, Falcon's first). */
    Norm attnNorm();

    /** The norm in front of the MLP, or null when the MLP reads the attention norm's output (Falcon-7B). */
    Norm mlpNorm();

    /** The block's linear layers in true-sequential order (the order GPTQ quantizes them in). */
    List<Linear> linears();

    /** A copy of this block with every linear layer replaced by {@code f(linear)}. */
    DecoderBlock mapLinears(UnaryOperator<Linear> f);

    /** What attention quantizes besides its linears' inputs: Q, K, V per head and token (a KV cache: K, V). */
    AttentionQuant attnQuant();

    /** A copy of this block whose attention quantizes as {@code q} says. */
    DecoderBlock withAttnQuant(AttentionQuant q);

    /**
     * Every tensor of the block under its checkpoint name relative to the block's prefix
     * ({@code input_layernorm.weight}, {@code self_attn.q_proj.weight}, {@code self_attn.q_proj.bias}), in a
     * fixed order: what a model store keeps of a block, and what {@code ModelLoader} reads back.
     */
    Map<String, Tensor> tensors();

    /** Adds a linear layer's weight and (when present) bias under its module name. */
    static void putLinear(Map<String, Tensor> out, Linear l) {
        out.put(l.name() + ".weight", l.weight());
        if (l.bias() != null) out.put(l.name() + ".bias", l.bias());
    }

    /** Adds a norm's weight and (LayerNorm) bias under {@code name}. */
    static void putNorm(Map<String, Tensor> out, String name, Norm n) {
        out.put(name + ".weight", n.weight());
        if (n.bias() != null) out.put(name + ".bias", n.bias());
    }
}
