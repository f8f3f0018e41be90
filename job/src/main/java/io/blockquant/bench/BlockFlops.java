package io.blockquant.bench;

import io.blockquant.model.ModelSpec;

/** Analytic floating-point operations of a Llama block, the numerator of every GFLOP/s a benchmark prints. */
public final class BlockFlops {

    private BlockFlops() {}

    /**
     * One forward over {@code batch} windows of {@code seq} tokens: linears 2·tokens·in·out, attention
     * 2·2·heads·seq²·headDim per window, full rather than causal (the backends compute every score and mask after).
     */
    public static double llamaForward(ModelSpec spec, int batch, int seq) {
        double tokens = (double) batch * seq;
        int h = spec.hiddenSize(), q = spec.numHeads() * spec.headDim(), kv = spec.numKvHeads() * spec.headDim();
        double linearParams = (double) h * q + 2.0 * h * kv + (double) q * h + 3.0 * h * spec.intermediateSize();
        double attention = 2.0 * 2.0 * batch * spec.numHeads() * (double) seq * seq * spec.headDim();
        return 2.0 * tokens * linearParams + attention;
    }
}
