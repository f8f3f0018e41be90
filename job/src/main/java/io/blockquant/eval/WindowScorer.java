package io.blockquant.eval;

import io.blockquant.nn.CausalLm;
import io.blockquant.tensor.Tensor;
import java.util.List;

/**
 * Scores windows with a model: each window's tokens 1..seq-1 are predicted from the tokens before them
 * in the same window; returns the summed negative log-likelihood in float64. {@link #targets} and
 * {@link #nll} are the protocol's arithmetic, shared with the block-by-block {@link PerplexityJob} so both
 * give the same sums.
 */
public final class WindowScorer {

    private WindowScorer() {}

    /** A model held whole (a test's, a GPU run's). */
    public static NllSum score(CausalLm model, List<int[]> windows) {
        int[][] batch = windows.toArray(new int[0][]);
        int[] targets = targets(batch);
        var be = model.tokenEmbedding().backend();
        return be.scratchValue(() -> {
            Tensor logits = model.forward(batch);
            return nll(be.rowLogSumExp(logits), be.pickPerRow(logits, targets), batch.length, batch[0].length);
        });
    }

    /**
     * The token each row of the batch's logits predicts: row (b, t) predicts token t+1 of window b; the last
     * row of a window predicts nothing (0, never counted).
     */
    static int[] targets(int[][] batch) {
        int seq = batch[0].length;
        int[] targets = new int[batch.length * seq];
        for (int b = 0; b < batch.length; b++) {
            for (int t = 0; t < seq - 1; t++) targets[b * seq + t] = batch[b][t + 1];
        }
        return targets;
    }

    /** {@code Σ lse − logit(target)} over the rows that predict a token, in row order, in float64. */
    static NllSum nll(double[] lse, float[] picked, int windows, int seq) {
        double sum = 0;
        long count = 0;
        for (int b = 0; b < windows; b++) {
            for (int t = 0; t < seq - 1; t++) {
                int r = b * seq + t;
                sum += lse[r] - picked[r];
                count++;
            }
        }
        return new NllSum(sum, count, windows);
    }
}
