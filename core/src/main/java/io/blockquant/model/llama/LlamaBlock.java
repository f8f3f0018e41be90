package io.blockquant.model.llama;

import io.blockquant.model.ModelSpec;
import io.blockquant.nn.Attention;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.nn.Norm;
import io.blockquant.quant.AttentionQuant;
import io.blockquant.tensor.Activation;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * Llama/Mistral/Qwen2 block: {@code h = x + o(attn(rmsnorm(x)))}, {@code out = h + down(silu(gate(n)) ⊙ up(n))}
 * with {@code n = rmsnorm(h)}; {@code attnNorm} is input_layernorm, {@code mlpNorm} post_attention_layernorm.
 */
public record LlamaBlock(ModelSpec spec, Norm attnNorm, Linear q, Linear k, Linear v, Linear o,
                         Norm mlpNorm, Linear gate, Linear up, Linear down, AttentionQuant attnQuant) implements DecoderBlock {

    public LlamaBlock(ModelSpec spec, Norm attnNorm, Linear q, Linear k, Linear v, Linear o, Norm mlpNorm, Linear gate,
                      Linear up, Linear down) {
        this(spec, attnNorm, q, k, v, o, mlpNorm, gate, up, down, AttentionQuant.NONE);
    }

    @Override
    public Tensor forward(Tensor x, int batch, int seq) {
        TensorBackend be = x.backend();
        Tensor n = attnNorm.forward(x);
        Tensor attn = Attention.causal(q.forward(n), k.forward(n), v.forward(n), batch, seq,
                spec.numHeads(), spec.numKvHeads(), spec.headDim(), spec.invFreq(), attnQuant);
        Tensor h = be.add(x, o.forward(attn));
        Tensor m = mlpNorm.forward(h);
        Tensor act = be.gatedActivation(gate.forward(m), up.forward(m), Activation.SILU);
        return be.add(h, down.forward(act));
    }

    @Override
    public List<Linear> linears() {
        return List.of(q, k, v, o, gate, up, down);
    }

    @Override
    public LlamaBlock mapLinears(UnaryOperator<Linear> f) {
        return new LlamaBlock(spec, attnNorm, f.apply(q), f.apply(k), f.apply(v), f.apply(o), mlpNorm,
                f.apply(gate), f.apply(up), f.apply(down), attnQuant);
    }

    @Override
    public LlamaBlock withAttnQuant(AttentionQuant a) {
        return new LlamaBlock(spec, attnNorm, q, k, v, o, mlpNorm, gate, up, down, a);
    }

    @Override
    public Map<String, Tensor> tensors() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        DecoderBlock.putNorm(out, "input_layernorm", attnNorm);
        DecoderBlock.putNorm(out, "post_attention_layernorm", mlpNorm);
        for (Linear l : linears()) DecoderBlock.putLinear(out, l);
        return out;
    }
}
