package io.blockquant.algo.omniquant;

import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.algo.omniquant.HeapBlock.Layer;
import io.blockquant.algo.omniquant.HeapBlock.NormParams;
import io.blockquant.quant.ScaleShift;
import java.util.ArrayList;
import java.util.List;

/**
 * Learnable Equivalent Transformation (OmniQuant eq. 4–6) of one block, as the reference applies it
 * ({@code models/transformation.py}: {@code smooth_ln_fcs}, {@code smooth_fc_fc}, {@code smooth_q_k}):
 * <ul>
 *   <li>after each norm, channel scale s and shift δ: {@code X̃ = (X − δ)⊘s} is folded into the norm
 *       ({@code w/s}, {@code (b − δ)/s}) and {@code s⊙W}, {@code b + W·δ} into every linear reading it (eq. 4–5);
 *       Falcon-7B's single norm feeds query_key_value and dense_h_to_4h with one (s, δ);</li>
 *   <li>between v and the output projection, per value channel: v's rows {@code /s}, bias {@code (b − δ)/s},
 *       the output projection's columns {@code ·s}, bias {@code + W·δ} (exact because attention
 *       probabilities sum to one); with grouped-query attention each value channel serves its query heads;</li>
 *   <li>between queries and keys (eq. 6): q rows {@code /s}, k rows {@code ·s}, per key channel. Under RoPE
 *       the two dims a rotation mixes share one scale so the scaling commutes with the rotation;</li>
 *   <li>only when asked ({@code --let-down}; not the reference's, which leaves the down projection's input alone):
 *       in a gated MLP {@code down(act(gate·x) ⊙ up·x)}, up's rows {@code /s} and down's columns {@code ·s} per
 *       intermediate channel (AWQ's up→down pair; exact because the product is linear in up's output).</li>
 * </ul>
 * Shifts need a norm with a bias and linears with biases (they exist only where the reference uses them: OPT
 * with activation quantization); scales are truncated away from zero as the reference's
 * {@code truncate_number} (|s| ≥ 1e-2). {@link #apply} is heap math (the fold's); {@link ResidentObjective}
 * runs the same transformation and its gradient as backend operations during training.
 */
public final class EquivalentTransform {

    /** The reference's truncate_number threshold for scales. */
    static final float MIN_ABS_SCALE = 1e-2f;

    /**
     * The linears reading each norm's output, where that norm's scale and shift fold in (eq. 4–5): a family's
     * choice ({@code FamilyDescriptor#letNormReaders}). The other two pairs, v with the output projection and
     * q with k, are every attention's.
     */
    public record NormReaders(List<Proj> attnNorm, List<Proj> mlpNorm) {}

    final HeapBlock fp;
    final NormReaders readers;
    /** Learnable vectors; a null one is not part of this transformation. */
    public final float[] attnScale, attnShift, mlpScale, mlpShift, outScale, outShift, qkScale, downScale;
    final int headDim, groups, kvChannels, ropeHalf;

    /** {@code shift}: the shifts where the block allows them; {@code qk}: eq. 6's scale; {@code down}: the up→down scale. */
    public EquivalentTransform(HeapBlock fp, boolean shift, boolean qk, boolean down) {
        this.fp = fp;
        this.readers = fp.spec.family().descriptor().letNormReaders(fp.spec);
        int h = fp.hidden();
        this.headDim = fp.spec.headDim();
        this.groups = fp.spec.kvGroups();
        this.kvChannels = fp.spec.numKvHeads() * headDim;
        this.ropeHalf = fp.spec.invFreq() == null ? 0 : fp.spec.invFreq().length;
        boolean canShift = shift && !fp.rms && fp.layer(Proj.Q).b() != null && fp.layer(Proj.V).b() != null;
        attnScale = ones(h);
        attnShift = canShift ? new float[h] : null;
        boolean mlpNorm = fp.mlpNorm != null;
        mlpScale = mlpNorm ? ones(h) : null;
        mlpShift = mlpNorm && canShift && fp.mlpNorm.b() != null
                && readers.mlpNorm().stream().allMatch(p -> fp.layer(p).b() != null) ? new float[h] : null;
        outScale = ones(kvChannels);
        outShift = canShift ? new float[kvChannels] : null;
        qkScale = qk ? ones(kvChannels) : null;
        if (down && !fp.spec.family().descriptor().gatedMlp()) {
            throw new IllegalArgumentException("the up→down LET scale needs a gated MLP; " + fp.spec.family() + "'s has no gate");
        }
        downScale = down ? ones(fp.layer(Proj.DOWN).in()) : null;
    }

    private static float[] ones(int n) {
        float[] a = new float[n];
        java.util.Arrays.fill(a, 1f);
        return a;
    }

    /** The linears reading each norm's output (the family's). */
    public NormReaders readers() {
        return readers;
    }

    /** Every learnable vector, for the optimizer. */
    public List<float[]> parameters() {
        List<float[]> out = new ArrayList<>();
        for (float[] p : new float[][] {attnScale, attnShift, mlpScale, mlpShift, outScale, outShift, qkScale, downScale}) {
            if (p != null) out.add(p);
        }
        return out;
    }

    /** The learnable vectors by name (the reference's {@code omni_parameters} keys, in snake case). */
    public java.util.Map<String, float[]> named() {
        java.util.Map<String, float[]> out = new java.util.LinkedHashMap<>();
        String[] names = {"attn_scale", "attn_shift", "mlp_scale", "mlp_shift", "out_scale", "out_shift", "qk_scale", "down_scale"};
        float[][] vectors = {attnScale, attnShift, mlpScale, mlpShift, outScale, outShift, qkScale, downScale};
        for (int i = 0; i < names.length; i++) if (vectors[i] != null) out.put("let." + names[i], vectors[i]);
        return out;
    }

    /** The scales among {@link #parameters()}: truncated after every update. */
    public List<float[]> scales() {
        List<float[]> out = new ArrayList<>();
        for (float[] p : new float[][] {attnScale, mlpScale, outScale, qkScale, downScale}) if (p != null) out.add(p);
        return out;
    }

    /** The reference's truncate_number: |s| < 1e-2 becomes ±1e-2. */
    public void truncateScales() {
        for (float[] s : scales()) {
            for (int i = 0; i < s.length; i++) {
                if (Math.abs(s[i]) < MIN_ABS_SCALE) s[i] = s[i] < 0 ? -MIN_ABS_SCALE : MIN_ABS_SCALE;
            }
        }
    }

    /** Key channel of an output-projection input column / query channel (head h, dim i -> kv head h/groups). */
    int kvChannel(int queryChannel) {
        int head = queryChannel / headDim, i = queryChannel % headDim;
        return (head / groups) * headDim + i;
    }

    /** The learnable index behind a key channel's qk scale: RoPE pairs (i, i + half) share dim i's. */
    int qkParam(int kvChannel) {
        int i = kvChannel % headDim;
        return i >= ropeHalf && i < 2 * ropeHalf ? kvChannel - ropeHalf : kvChannel;
    }

    /** Per stored layer: input-column scale and shift, row factor and row shift (null: identity). */
    private record Plan(float[] inScale, float[] inShift, float[] rowFactor, float[] rowShift) {}

    private Plan[] plan() {
        int n = fp.layers.size();
        float[][] inS = new float[n][], inD = new float[n][], rowR = new float[n][], rowD = new float[n][];
        // after each norm
        for (Proj p : readers.attnNorm()) {
            inS[fp.layerOf[p.ordinal()]] = attnScale;
            inD[fp.layerOf[p.ordinal()]] = attnShift;
        }
        for (Proj p : readers.mlpNorm()) {
            inS[fp.layerOf[p.ordinal()]] = mlpScale;
            inD[fp.layerOf[p.ordinal()]] = mlpShift;
        }
        // v -> output projection
        int o = fp.layerOf[Proj.O.ordinal()];
        int oIn = fp.layers.get(o).in();
        inS[o] = new float[oIn];
        for (int j = 0; j < oIn; j++) inS[o][j] = outScale[kvChannel(j)];
        if (outShift != null) {
            inD[o] = new float[oIn];
            for (int j = 0; j < oIn; j++) inD[o][j] = outShift[kvChannel(j)];
        }
        rowFactors(Proj.V, c -> 1f / outScale[c], rowR);
        if (outShift != null) {
            int v = fp.layerOf[Proj.V.ordinal()];
            rowD[v] = new float[fp.layers.get(v).out()];
            int[] rows = fp.rowsOf[Proj.V.ordinal()];
            for (int c = 0; c < kvChannels; c++) rowD[v][rows == null ? c : rows[c]] = outShift[c];
        }
        if (qkScale != null) {
            rowFactors(Proj.Q, c -> 1f / qkScale[qkParam(kvChannel(c))], rowR);
            rowFactors(Proj.K, c -> qkScale[qkParam(c)], rowR);
        }
        if (downScale != null) {
            inS[fp.layerOf[Proj.DOWN.ordinal()]] = downScale;
            rowFactors(Proj.UP, c -> 1f / downScale[c], rowR);
        }
        Plan[] plans = new Plan[n];
        for (int i = 0; i < n; i++) plans[i] = new Plan(inS[i], inD[i], rowR[i], rowD[i]);
        return plans;
    }

    private void rowFactors(Proj p, java.util.function.IntToDoubleFunction factor, float[][] rowR) {
        int li = fp.layerOf[p.ordinal()];
        Layer l = fp.layers.get(li);
        if (rowR[li] == null) rowR[li] = ones(l.out());
        int[] rows = fp.rowsOf[p.ordinal()];
        int count = rows == null ? l.out() : rows.length;
        for (int c = 0; c < count; c++) rowR[li][rows == null ? c : rows[c]] = (float) factor.applyAsDouble(c);
    }

    /** The transformed block: its norms and layers. */
    public static final class Applied {
        public final NormParams attnNorm, mlpNorm;
        public final float[][] weight, bias;

        Applied(NormParams attnNorm, NormParams mlpNorm, float[][] weight, float[][] bias) {
            this.attnNorm = attnNorm;
            this.mlpNorm = mlpNorm;
            this.weight = weight;
            this.bias = bias;
        }
    }

    /**
     * Eq. 4–6 on the full-precision block, on the heap ({@link ScaleShift}: {@code W1 = W·diag(s_in)},
     * {@code b1 = b + W·δ_in}, {@code W2 = diag(r)·W1}, {@code b2 = r⊙(b1 − δ_row)}): the fold's; training runs
     * the backend's op of the same math ({@link ResidentObjective}).
     */
    public Applied apply() {
        Plan[] plans = plan();
        int n = fp.layers.size();
        float[][] w2 = new float[n][], b2 = new float[n][];
        java.util.stream.IntStream.range(0, n).parallel().forEach(li -> { // each layer writes only its own slots
            Layer l = fp.layers.get(li);
            Plan p = plans[li];
            float[][] t = ScaleShift.forward(l.w(), l.out(), l.in(), l.b(), p.inScale(), p.inShift(), p.rowFactor(), p.rowShift());
            w2[li] = t[0];
            b2[li] = t[1];
        });
        NormParams attn = norm(fp.attnNorm, attnScale, attnShift);
        NormParams mlp = fp.mlpNorm == null ? null : norm(fp.mlpNorm, mlpScale, mlpShift);
        return new Applied(attn, mlp, w2, b2);
    }

    private static NormParams norm(NormParams n, float[] s, float[] d) {
        float[] w = new float[n.w().length];
        for (int i = 0; i < w.length; i++) w[i] = n.w()[i] / s[i];
        float[] b = null;
        if (n.b() != null) {
            b = new float[w.length];
            for (int i = 0; i < w.length; i++) b[i] = (n.b()[i] - (d == null ? 0f : d[i])) / s[i];
        }
        return new NormParams(w, b);
    }
}
