package io.blockquant.eval;

import io.blockquant.model.TensorRows;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;

/**
 * The output head's half of the negative log-likelihood: per row of the head's input, {@code log Σ_v exp(logit_v)}
 * and the target's logit. The head is taken in chunks of vocabulary rows, so neither a real model's head
 * (128256 × 4096, 2.1 GB in float32) nor a partition's full logits are ever held.
 *
 * <p>With one chunk (the whole head fits one) this is exactly the whole-model arithmetic the reference
 * figures were measured with: the backend's row log-sum-exp, which sums the exponentials in float32. With
 * several, each chunk's float32 logits are reduced in float64 and the chunks' log-sum-exps combined in
 * float64, so the figure does not depend on the chunking (to about 1e-15); it differs from the float32 sum
 * by that sum's rounding (about 2e-6 of the NLL on the tiny models). On a device each chunk's log-sum-exp is the
 * backend's float32 one (its logits never cross to the heap), so there the figure depends on the chunking at that
 * float32 rounding.
 *
 * @param lse    per row, {@code log Σ_v exp(logit_v)}
 * @param picked per row, the logit of its target
 */
public record HeadScores(double[] lse, float[] picked) {

    /**
     * Scores {@code x} ({@code [rows, width]}, the head's input) against {@code head} ({@code [vocab, width]})
     * read {@code chunkRows} vocabulary rows at a time; {@code targets} holds one vocabulary index per row.
     */
    public static HeadScores score(Tensor x, TensorRows head, int chunkRows, int[] targets) {
        TensorBackend be = x.backend();
        int vocab = Math.toIntExact(head.rows()), width = Math.toIntExact(head.cols());
        for (int t : targets) {
            if (t < 0 || t >= vocab) throw new IllegalArgumentException("token " + t + " outside the vocabulary of " + vocab);
        }
        if (chunkRows >= vocab) {
            float[] w = head.readRows(0, vocab);
            return be.scratchValue(() -> {
                Tensor logits = be.matmul(x, be.fromFloats(w, vocab, width), false, true);
                return new HeadScores(be.rowLogSumExp(logits), be.pickPerRow(logits, targets));
            });
        }
        int rows = targets.length, chunks = (vocab + chunkRows - 1) / chunkRows;
        double[][] chunkLse = new double[chunks][];
        float[] picked = new float[rows];
        for (int c = 0; c < chunks; c++) {
            int from = c * chunkRows, n = Math.min(chunkRows, vocab - from);
            float[] w = head.readRows(from, n);
            int[] local = new int[rows]; // each row's target within the chunk, 0 where it lies in another
            for (int r = 0; r < rows; r++) local[r] = targets[r] >= from && targets[r] < from + n ? targets[r] - from : 0;
            float[] got;
            if (be.onDevice()) {
                // the chunk's logits stay on the device (a Llama-3-8B's head over 57k tokens is 29 GB of them): its rows'
                // log-sum-exps (float32 sums there, combined in float64 below) and the targets' logits come back
                float[][] pickedHere = new float[1][];
                chunkLse[c] = be.scratchValue(() -> {
                    Tensor logits = be.matmul(x, be.fromFloats(w, n, width), false, true);
                    pickedHere[0] = be.pickPerRow(logits, local);
                    return be.rowLogSumExp(logits);
                });
                got = pickedHere[0];
            } else {
                float[] logits = be.scratchValue(() -> be.matmul(x, be.fromFloats(w, n, width), false, true).toFloats());
                chunkLse[c] = rowLogSumExp(logits, rows, n);
                got = new float[rows];
                for (int r = 0; r < rows; r++) got[r] = logits[r * n + local[r]];
            }
            for (int r = 0; r < rows; r++) {
                if (targets[r] >= from && targets[r] < from + n) picked[r] = got[r];
            }
        }
        return new HeadScores(combine(chunkLse), picked);
    }

    /** Per row of a row-major {@code [rows, cols]} matrix, {@code log Σ_j exp(m[r, j])} in float64, around the row's max. */
    static double[] rowLogSumExp(float[] m, int rows, int cols) {
        double[] out = new double[rows];
        for (int r = 0; r < rows; r++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int j = r * cols; j < (r + 1) * cols; j++) max = Math.max(max, m[j]);
            double sum = 0;
            for (int j = r * cols; j < (r + 1) * cols; j++) sum += Math.exp(m[j] - max);
            out[r] = max + Math.log(sum);
        }
        return out;
    }

    /**
     * Per row, {@code log Σ_c exp(lse_c)} of the chunks' log-sum-exps, in float64 around the largest term
     * ({@code m + log Σ_c exp(lse_c − m)}) so no term overflows.
     */
    static double[] combine(double[][] chunkLse) {
        int rows = chunkLse[0].length;
        double[] out = new double[rows];
        for (int r = 0; r < rows; r++) {
            double m = Double.NEGATIVE_INFINITY;
            for (double[] c : chunkLse) m = Math.max(m, c[r]);
            double sum = 0;
            for (double[] c : chunkLse) sum += Math.exp(c[r] - m);
            out[r] = m + Math.log(sum);
        }
        return out;
    }
}
