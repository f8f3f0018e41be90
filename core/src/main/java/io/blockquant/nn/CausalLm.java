package io.blockquant.nn;

import io.blockquant.model.ModelSpec;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.List;
import java.util.function.UnaryOperator;

/**
 * A whole causal language model: token (and, for OPT, learned position) embedding, the decoder blocks,
 * the final norm and the output head. Windows are batched: {@code [batch][seq]} ids become one
 * {@code [batch·seq, hidden]} tensor so every matrix product is large.
 *
 * @param positions  a learned position table, row {@code pos} for position pos (OPT's), else null
 * @param projectIn  OPT's project_in when word_embed_proj_dim differs from hidden, else null
 * @param projectOut OPT's project_out, else null
 * @param head       output head {@code [vocab, projDim]} (the token embedding when tied)
 *
 * <p>A stem for a block-by-block pass ({@code ModelLoader#stemWithoutTables}) has no blocks and null
 * {@code tokenEmbedding} and {@code head}: its user reads their rows itself ({@link #embedRows},
 * {@link #headInput}).
 */
public record CausalLm(ModelSpec spec, Tensor tokenEmbedding, Tensor positions, Linear projectIn,
                       List<DecoderBlock> blocks, Norm finalNorm, Linear projectOut, Tensor head) {

    public Tensor embed(int[][] windows) {
        TensorBackend be = tokenEmbedding.backend();
        int batch = windows.length, seq = windows[0].length;
        int[] ids = new int[batch * seq];
        for (int b = 0; b < batch; b++) {
            if (windows[b].length != seq) throw new IllegalArgumentException("windows of a batch must have equal length");
            System.arraycopy(windows[b], 0, ids, b * seq, seq);
        }
        return embedRows(be.gatherRows(tokenEmbedding, ids), batch, seq);
    }

    /**
     * The block-0 input from the token embedding's rows of a batch ({@code [batch·seq, width]}, window after
     * window): project_in and learned positions added where the model has them (OPT); else the rows themselves.
     */
    public Tensor embedRows(Tensor tokenRows, int batch, int seq) {
        TensorBackend be = tokenRows.backend();
        Tensor h = tokenRows;
        if (projectIn != null) h = projectIn.forward(h);
        if (positions != null) {
            int[] pos = new int[batch * seq];
            for (int i = 0; i < pos.length; i++) pos[i] = i % seq;
            h = be.add(h, be.gatherRows(positions, pos));
        }
        return h;
    }

    /** Final norm (and OPT's project_out): the last blocks' output as the head sees it. */
    public Tensor headInput(Tensor hidden) {
        Tensor h = finalNorm == null ? hidden : finalNorm.forward(hidden);
        return projectOut == null ? h : projectOut.forward(h);
    }

    /** Final norm and head: {@code [batch·seq, hidden] -> [batch·seq, vocab]}. */
    public Tensor logits(Tensor hidden) {
        return hidden.backend().matmul(headInput(hidden), head, false, true);
    }

    public Tensor forward(int[][] windows) {
        Tensor h = embed(windows);
        int batch = windows.length, seq = windows[0].length;
        for (DecoderBlock block : blocks) {
            Tensor in = h;
            h = in.backend().scratch(() -> block.forward(in, batch, seq));
        }
        Tensor last = h;
        return h.backend().scratch(() -> logits(last));
    }

    /** The same model with every block linear replaced by {@code f(linear)} (embeddings and head untouched). */
    public CausalLm mapBlockLinears(UnaryOperator<Linear> f) {
        return new CausalLm(spec, tokenEmbedding, positions, projectIn,
                blocks.stream().map(b -> b.mapLinears(f)).toList(), finalNorm, projectOut, head);
    }
}
