package io.blockquant.bench;

import io.blockquant.nn.Linear;
import io.blockquant.model.llama.LlamaBlock;
import io.blockquant.tensor.Activation;
import io.blockquant.tensor.ForwardOps;
import io.blockquant.tensor.Tensor;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Where a Llama block's forward spends its time: the same backend calls as {@link LlamaBlock#forward} and
 * {@link io.blockquant.nn.Attention#causal}, in the same order, each timed into a category. It repeats those
 * two methods step by step (they have no hooks), so a change there must be mirrored here.
 */
public final class ForwardProfile {

    private ForwardProfile() {}

    public static final String LINEARS = "matmul: linear layers";
    public static final String ATTENTION_MATMUL = "matmul: scores QKᵀ and P·V";
    public static final String SOFTMAX = "causal softmax (mask + ND4J softmax)";
    public static final String NORMS = "RMSNorm (Java loops)";
    public static final String ROPE = "RoPE (Java loops)";
    public static final String LAYOUT = "split/merge/repeat heads (copies)";
    public static final String ELEMENTWISE = "SiLU, products, residual adds";

    /** Seconds per category for one forward of {@code block} on {@code x [batch·seq, hidden]}. */
    public static Map<String, Double> run(LlamaBlock block, Tensor x, int batch, int seq) {
        ForwardOps be = x.backend();
        Map<String, Double> seconds = new LinkedHashMap<>();
        for (String c : new String[] {LINEARS, ATTENTION_MATMUL, SOFTMAX, NORMS, ROPE, LAYOUT, ELEMENTWISE}) seconds.put(c, 0.0);
        be.scratchValue(() -> {
            var spec = block.spec();
            Tensor n = timed(seconds, NORMS, () -> block.attnNorm().forward(x));
            Tensor q = linear(seconds, block.q(), n), k = linear(seconds, block.k(), n), v = linear(seconds, block.v(), n);
            int heads = spec.numHeads(), kvHeads = spec.numKvHeads(), d = spec.headDim();
            Tensor qh0 = timed(seconds, LAYOUT, () -> be.splitHeads(q, batch, seq, heads, d));
            Tensor kh0 = timed(seconds, LAYOUT, () -> be.splitHeads(k, batch, seq, kvHeads, d));
            Tensor vh0 = timed(seconds, LAYOUT, () -> be.splitHeads(v, batch, seq, kvHeads, d));
            Tensor qh = timed(seconds, ROPE, () -> be.rope(qh0, spec.invFreq()));
            Tensor kh1 = timed(seconds, ROPE, () -> be.rope(kh0, spec.invFreq()));
            int groups = heads / kvHeads;
            Tensor kh = timed(seconds, LAYOUT, () -> be.repeatHeads(kh1, batch, kvHeads, groups));
            Tensor vh = timed(seconds, LAYOUT, () -> be.repeatHeads(vh0, batch, kvHeads, groups));
            Tensor scores = timed(seconds, ATTENTION_MATMUL, () -> be.batchMatmul(qh, kh, false, true));
            Tensor probs = timed(seconds, SOFTMAX, () -> be.causalSoftmax(scores, (float) (1.0 / Math.sqrt(d))));
            Tensor out = timed(seconds, ATTENTION_MATMUL, () -> be.batchMatmul(probs, vh, false, false));
            Tensor attn = timed(seconds, LAYOUT, () -> be.mergeHeads(out, batch, seq, heads, d));
            Tensor o = linear(seconds, block.o(), attn);
            Tensor h = timed(seconds, ELEMENTWISE, () -> be.add(x, o));
            Tensor m = timed(seconds, NORMS, () -> block.mlpNorm().forward(h));
            Tensor g = linear(seconds, block.gate(), m), u = linear(seconds, block.up(), m);
            Tensor act = timed(seconds, ELEMENTWISE, () -> be.mul(be.activate(g, Activation.SILU), u));
            Tensor down = linear(seconds, block.down(), act);
            timed(seconds, ELEMENTWISE, () -> be.add(h, down));
            return null;
        });
        return seconds;
    }

    private static Tensor linear(Map<String, Double> seconds, Linear l, Tensor x) {
        return timed(seconds, LINEARS, () -> l.forward(x));
    }

    private static Tensor timed(Map<String, Double> seconds, String category, java.util.function.Supplier<Tensor> step) {
        long t0 = System.nanoTime();
        Tensor t = step.get();
        seconds.merge(category, (System.nanoTime() - t0) / 1e9, Double::sum);
        return t;
    }
}
