package io.blockquant.model.opt;

import io.blockquant.model.ModelSpec;
import io.blockquant.nn.Attention;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.nn.Norm;
import io.blockquant.quant.AttentionQuant;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * OPT block. Pre-LN (the usual case): {@code h = x + out(attn(ln1(x)))}, {@code y = h + fc2(act(fc1(ln2(h))))};
 * post-LN (OPT-350m) normalizes after each residual instead.
 */
public record OptBlock(ModelSpec spec, Norm attnNorm, Linear q, Linear k, Linear v, Linear out,
                       Norm mlpNorm, Linear fc1, Linear fc2, AttentionQuant attnQuant) implements DecoderBlock {

    public OptBlock(ModelSpec spec, Norm attnNorm, Linear q, Linear k, Linear v, Linear out, Norm mlpNorm, Linear fc1, Linear fc2) {
        this(spec, attnNorm, q, k, v, out, mlpNorm, fc1, fc2, AttentionQuant.NONE);
    }

    @Override
    public Tensor forward(Tensor x, int batch, int seq) {
        TensorBackend be = x.backend();
        boolean before = OptFlags.of(spec).normBefore();
        Tensor n = before ? attnNorm.forward(x) : x;
        Tensor attn = Attention.causal(q.forward(n), k.forward(n), v.forward(n), batch, seq,
                spec.numHeads(), spec.numHeads(), spec.headDim(), null, attnQuant);
        Tensor h = be.add(x, out.forward(attn));
        if (!before) h = attnNorm.forward(h);
        Tensor m = before ? mlpNorm.forward(h) : h;
        Tensor y = be.add(h, fc2.forward(be.activate(fc1.forward(m), spec.activation())));
        return before ? y : mlpNorm.forward(y);
    }

    @Override
    public List<Linear> linears() {
        return List.of(q, k, v, out, fc1, fc2);
    }

    @Override
    public OptBlock mapLinears(UnaryOperator<Linear> f) {
        return new OptBlock(spec, attnNorm, f.apply(q), f.apply(k), f.apply(v), f.apply(out), mlpNorm,
                f.apply(fc1), f.apply(fc2), attnQuant);
    }

    @Override
    public OptBlock withAttnQuant(AttentionQuant a) {
        return new OptBlock(spec, attnNorm, q, k, v, out, mlpNorm, fc1, fc2, a);
    }

    @Override
    public Map<String, Tensor> tensors() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        DecoderBlock.putNorm(out, "self_attn_layer_norm", attnNorm);
        DecoderBlock.putNorm(out, "final_layer_norm", mlpNorm);
        for (Linear l : linears()) DecoderBlock.putLinear(out, l);
        return out;
    }
}
