package io.blockquant.nn;

import io.blockquant.quant.AttentionQuant;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;

/**
 * Causal multi-head attention over a batch of windows, from already projected queries, keys and
 * values ({@code [batch·seq, heads·headDim]}, kv with {@code kvHeads} heads): optional RoPE, scaled
 * dot products, causal softmax, weighted values; returns {@code [batch·seq, heads·headDim]} before the
 * output projection. With an {@link AttentionQuant}, queries and keys after RoPE and the values are
 * fake-quantized per head and per token before the two products (the probabilities are not).
 */
public final class Attention {

    private Attention() {}

    public static Tensor causal(Tensor q, Tensor k, Tensor v, int batch, int seq, int heads, int kvHeads,
                                int headDim, float[] ropeInvFreq) {
        return causal(q, k, v, batch, seq, heads, kvHeads, headDim, ropeInvFreq, AttentionQuant.NONE);
    }

    public static Tensor causal(Tensor q, Tensor k, Tensor v, int batch, int seq, int heads, int kvHeads,
                                int headDim, float[] ropeInvFreq, AttentionQuant quant) {
        TensorBackend be = q.backend();
        Tensor qh = be.splitHeads(q, batch, seq, heads, headDim);
        Tensor kh = be.splitHeads(k, batch, seq, kvHeads, headDim);
        Tensor vh = be.splitHeads(v, batch, seq, kvHeads, headDim);
        if (ropeInvFreq != null) {
            qh = be.rope(qh, ropeInvFreq);
            kh = be.rope(kh, ropeInvFreq);
        }
        // rows of [b·h, seq, d] are (head, token): per-head per-token scales; quantizing a kv head before
        // repeating it for its query heads gives the same values as the reference's after repeat_kv
        qh = be.fakeQuantizeTokens(qh, quant.query());
        kh = be.fakeQuantizeTokens(kh, quant.key());
        vh = be.fakeQuantizeTokens(vh, quant.value());
        int groups = heads / kvHeads;
        kh = be.repeatHeads(kh, batch, kvHeads, groups);
        vh = be.repeatHeads(vh, batch, kvHeads, groups);
        Tensor scores = be.batchMatmul(qh, kh, false, true);               // [b·h, seq, seq]
        Tensor probs = be.causalSoftmax(scores, (float) (1.0 / Math.sqrt(headDim)));
        Tensor out = be.batchMatmul(probs, vh, false, false);              // [b·h, seq, d]
        return be.mergeHeads(out, batch, seq, heads, headDim);
    }
}
