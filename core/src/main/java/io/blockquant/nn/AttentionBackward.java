package io.blockquant.nn;

import io.blockquant.quant.AttentionQuant;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;

/**
 * {@link Attention#causal} with its intermediates kept, and the backward pass through it: gradients of
 * the projected queries, keys and values from the gradient of the merged attention output. Quantized
 * queries, keys and values ({@link AttentionQuant}) take the reference's gradient: the products' gradients, taken
 * at the quantized operands, go through {@link TensorBackend#fakeQuantizeTokensBackward} (straight through inside
 * the clamp range, each head-token row's scale into its extremes) to the unquantized ones.
 */
public final class AttentionBackward {

    private AttentionBackward() {}

    /**
     * What the backward needs from the forward: rotated (and quantized) queries, repeated keys/values, probabilities;
     * the rotated queries and keys and the values before their quantization ({@code quant}'s backward reads them).
     */
    public record Cache(Tensor qh, Tensor kh, Tensor vh, Tensor probs, Tensor out, int batch, int seq, int heads,
                        int kvHeads, int headDim, float[] ropeInvFreq, Tensor qRaw, Tensor kRaw, Tensor vRaw, AttentionQuant quant) {}

    /** The forward of {@link Attention#causal}, same arithmetic, keeping what the backward needs. */
    public static Cache forward(Tensor q, Tensor k, Tensor v, int batch, int seq, int heads, int kvHeads,
                                int headDim, float[] ropeInvFreq) {
        return forward(q, k, v, batch, seq, heads, kvHeads, headDim, ropeInvFreq, AttentionQuant.NONE);
    }

    public static Cache forward(Tensor q, Tensor k, Tensor v, int batch, int seq, int heads, int kvHeads,
                                int headDim, float[] ropeInvFreq, AttentionQuant quant) {
        TensorBackend be = q.backend();
        Tensor qh = be.splitHeads(q, batch, seq, heads, headDim);
        Tensor kh = be.splitHeads(k, batch, seq, kvHeads, headDim);
        Tensor vh = be.splitHeads(v, batch, seq, kvHeads, headDim);
        if (ropeInvFreq != null) {
            qh = be.rope(qh, ropeInvFreq);
            kh = be.rope(kh, ropeInvFreq);
        }
        Tensor qRaw = qh, kRaw = kh, vRaw = vh;
        qh = be.fakeQuantizeTokens(qh, quant.query());
        kh = be.fakeQuantizeTokens(kh, quant.key());
        vh = be.fakeQuantizeTokens(vh, quant.value());
        int groups = heads / kvHeads;
        kh = be.repeatHeads(kh, batch, kvHeads, groups);
        vh = be.repeatHeads(vh, batch, kvHeads, groups);
        Tensor scores = be.batchMatmul(qh, kh, false, true);
        Tensor probs = be.causalSoftmax(scores, scale(headDim));
        Tensor out = be.mergeHeads(be.batchMatmul(probs, vh, false, false), batch, seq, heads, headDim);
        return new Cache(qh, kh, vh, probs, out, batch, seq, heads, kvHeads, headDim, ropeInvFreq, qRaw, kRaw, vRaw, quant);
    }

    private static float scale(int headDim) {
        return (float) (1.0 / Math.sqrt(headDim));
    }

    /** {@code {dq, dk, dv}} in the projections' layout {@code [batch·seq, heads·headDim]} (kv: kvHeads). */
    public static Tensor[] backward(Cache c, Tensor dOut) {
        TensorBackend be = dOut.backend();
        int groups = c.heads() / c.kvHeads();
        Tensor dO = be.splitHeads(dOut, c.batch(), c.seq(), c.heads(), c.headDim());   // [b·h, s, d]
        Tensor dProbs = be.batchMatmul(dO, c.vh(), false, true);                        // dP = dO·Vᵀ
        Tensor dV = be.batchMatmul(c.probs(), dO, true, false);                         // dV = Pᵀ·dO
        Tensor dScores = be.causalSoftmaxBackward(c.probs(), dProbs, scale(c.headDim()));
        Tensor dQ = be.batchMatmul(dScores, c.kh(), false, false);                      // dQ = dS·K
        Tensor dK = be.batchMatmul(dScores, c.qh(), true, false);                       // dK = dSᵀ·Q
        dK = be.sumRepeatedHeads(dK, c.batch(), c.kvHeads(), groups);
        dV = be.sumRepeatedHeads(dV, c.batch(), c.kvHeads(), groups);
        // a kv head is quantized before it is repeated: its gradient, summed over its query heads, goes through once
        dQ = be.fakeQuantizeTokensBackward(c.qRaw(), dQ, c.quant().query());
        dK = be.fakeQuantizeTokensBackward(c.kRaw(), dK, c.quant().key());
        dV = be.fakeQuantizeTokensBackward(c.vRaw(), dV, c.quant().value());
        if (c.ropeInvFreq() != null) {
            dQ = be.ropeBackward(dQ, c.ropeInvFreq());
            dK = be.ropeBackward(dK, c.ropeInvFreq());
        }
        return new Tensor[] {
            be.mergeHeads(dQ, c.batch(), c.seq(), c.heads(), c.headDim()),
            be.mergeHeads(dK, c.batch(), c.seq(), c.kvHeads(), c.headDim()),
            be.mergeHeads(dV, c.batch(), c.seq(), c.kvHeads(), c.headDim())};
    }
}
