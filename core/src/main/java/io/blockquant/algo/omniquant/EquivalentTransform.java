package io.blockquant.algo.omniquant;

import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.algo.omniquant.HeapBlock.Layer;
import io.blockquant.algo.omniquant.HeapBlock.NormParams;
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
 *       the two dims a rotation mixes share one scale so the scaling commutes with the rotation.</li>
 * </ul>
 * Shifts need a norm with a bias and linears with biases (they exist only where the reference uses them: OPT
 * with activation quantization); scales are truncated away from zero as the reference's
 * {@code truncate_number} (|s| ≥ 1e-2). {@link #apply} and {@link #backward} are pure heap math.
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
    public final float[] attnScale, attnShift, mlpScale, mlpShift, outScale, outShift, qkScale;
    final int headDim, groups, kvChannels, ropeHalf;

    public EquivalentTransform(HeapBlock fp, boolean shift, boolean qk) {
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
        for (float[] p : new float[][] {attnScale, attnShift, mlpScale, mlpShift, outScale, outShift, qkScale}) {
            if (p != null) out.add(p);
        }
        return out;
    }

    /** The learnable vectors by name (the reference's {@code omni_parameters} keys, in snake case). */
    public java.util.Map<String, float[]> named() {
        java.util.Map<String, float[]> out = new java.util.LinkedHashMap<>();
        String[] names = {"attn_scale", "attn_shift", "mlp_scale", "mlp_shift", "out_scale", "out_shift", "qk_scale"};
        float[][] vectors = {attnScale, attnShift, mlpScale, mlpShift, outScale, outShift, qkScale};
        for (int i = 0; i < names.length; i++) if (vectors[i] != null) out.put("let." + names[i], vectors[i]);
        return out;
    }

    /** The scales among {@link #parameters()}: truncated after every update. */
    public List<float[]> scales() {
        List<float[]> out = new ArrayList<>();
        for (float[] p : new float[][] {attnScale, mlpScale, outScale, qkScale}) if (p != null) out.add(p);
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

    /** The transformed block: its norms and layers, with what the backward re-reads. */
    public static final class Applied {
        public final NormParams attnNorm, mlpNorm;
        public final float[][] weight, bias;
        final float[][] w1, b1;
        final Plan[] plans;

        Applied(NormParams attnNorm, NormParams mlpNorm, float[][] weight, float[][] bias, float[][] w1, float[][] b1, Plan[] plans) {
            this.attnNorm = attnNorm;
            this.mlpNorm = mlpNorm;
            this.weight = weight;
            this.bias = bias;
            this.w1 = w1;
            this.b1 = b1;
            this.plans = plans;
        }
    }

    /** Eq. 4–6 on the full-precision block: {@code W1 = W·diag(s_in)}, {@code b1 = b + W·δ_in}, {@code W2 = diag(r)·W1}, {@code b2 = r⊙(b1 − δ_row)}. */
    public Applied apply() {
        Plan[] plans = plan();
        int n = fp.layers.size();
        float[][] w1 = new float[n][], b1 = new float[n][], w2 = new float[n][], b2 = new float[n][];
        java.util.stream.IntStream.range(0, n).parallel().forEach(li -> { // each layer writes only its own slots
            Layer l = fp.layers.get(li);
            Plan p = plans[li];
            int out = l.out(), in = l.in();
            float[] w = l.w();
            w1[li] = w;
            if (p.inScale() != null) {
                w1[li] = new float[w.length];
                for (int r = 0; r < out; r++) for (int c = 0; c < in; c++) w1[li][r * in + c] = w[r * in + c] * p.inScale()[c];
            }
            b1[li] = l.b();
            if (p.inShift() != null) {
                b1[li] = l.b() == null ? new float[out] : l.b().clone();
                for (int r = 0; r < out; r++) {
                    double s = 0;
                    for (int c = 0; c < in; c++) s += (double) w[r * in + c] * p.inShift()[c];
                    b1[li][r] += (float) s;
                }
            }
            w2[li] = w1[li];
            b2[li] = b1[li];
            if (p.rowFactor() != null) {
                w2[li] = new float[w.length];
                for (int r = 0; r < out; r++) {
                    float f = p.rowFactor()[r];
                    for (int c = 0; c < in; c++) w2[li][r * in + c] = w1[li][r * in + c] * f;
                }
            }
            if (b1[li] != null && (p.rowFactor() != null || p.rowShift() != null)) {
                b2[li] = new float[out];
                for (int r = 0; r < out; r++) {
                    float f = p.rowFactor() == null ? 1f : p.rowFactor()[r];
                    b2[li][r] = (b1[li][r] - (p.rowShift() == null ? 0f : p.rowShift()[r])) * f;
                }
            }
        });
        NormParams attn = norm(fp.attnNorm, attnScale, attnShift);
        NormParams mlp = fp.mlpNorm == null ? null : norm(fp.mlpNorm, mlpScale, mlpShift);
        return new Applied(attn, mlp, w2, b2, w1, b1, plans);
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

    /** Gradients by the same slots as the learnable vectors (null where a vector is absent). */
    public record Grads(float[] attnScale, float[] attnShift, float[] mlpScale, float[] mlpShift, float[] outScale,
                        float[] outShift, float[] qkScale) {
        public List<float[]> list() {
            List<float[]> out = new ArrayList<>();
            for (float[] g : new float[][] {attnScale, attnShift, mlpScale, mlpShift, outScale, outShift, qkScale}) {
                if (g != null) out.add(g);
            }
            return out;
        }
    }

    /**
     * Chain rule from the gradients of the transformed parameters (per stored layer {@code dW}, {@code db};
     * the norms' {@code dw}, {@code db}) to the learnable vectors.
     */
    public Grads backward(Applied a, float[][] dW, float[][] dB, NormParams dAttn, NormParams dMlp) {
        Grads g = new Grads(zerosLike(attnScale), zerosLike(attnShift), zerosLike(mlpScale), zerosLike(mlpShift),
                zerosLike(outScale), zerosLike(outShift), zerosLike(qkScale));
        int n = fp.layers.size();
        float[][] dInS = new float[n][], dInD = new float[n][], dRowR = new float[n][], dRowD = new float[n][];
        java.util.stream.IntStream.range(0, n).parallel().forEach(li -> { // each layer writes only its own slots
            Layer l = fp.layers.get(li);
            Plan p = a.plans[li];
            int out = l.out(), in = l.in();
            float[] g2 = dW[li], gb2 = dB[li];
            float[] g1 = g2, gb1 = gb2;
            if (p.rowFactor() != null || p.rowShift() != null) {
                if (p.rowFactor() != null) {
                    dRowR[li] = new float[out];
                    g1 = new float[g2.length];
                }
                if (gb2 != null) gb1 = new float[out];
                if (p.rowShift() != null) dRowD[li] = new float[out];
                for (int r = 0; r < out; r++) {
                    float f = p.rowFactor() == null ? 1f : p.rowFactor()[r];
                    if (p.rowFactor() != null) {
                        double s = 0;
                        for (int c = 0; c < in; c++) {
                            s += (double) g2[r * in + c] * a.w1[li][r * in + c];
                            g1[r * in + c] = g2[r * in + c] * f;
                        }
                        if (gb2 != null) s += (double) gb2[r] * (a.b1[li][r] - (p.rowShift() == null ? 0f : p.rowShift()[r]));
                        dRowR[li][r] = (float) s;
                    }
                    if (gb2 != null) {
                        gb1[r] = gb2[r] * f;
                        if (p.rowShift() != null) dRowD[li][r] = -gb2[r] * f;
                    }
                }
            }
            float[] w = l.w();
            if (p.inScale() != null) {
                double[] s = new double[in];
                for (int r = 0; r < out; r++) for (int c = 0; c < in; c++) s[c] += (double) g1[r * in + c] * w[r * in + c];
                dInS[li] = toFloat(s);
            }
            if (p.inShift() != null && gb1 != null) {
                double[] s = new double[in];
                for (int r = 0; r < out; r++) for (int c = 0; c < in; c++) s[c] += (double) w[r * in + c] * gb1[r];
                dInD[li] = toFloat(s);
            }
        });
        // reduce the per-layer vectors onto the learnable ones (the output projection's through kvChannel)
        int o = fp.layerOf[Proj.O.ordinal()];
        for (int li = 0; li < n; li++) {
            Plan p = a.plans[li];
            if (li == o) {
                for (int j = 0; j < dInS[o].length; j++) g.outScale()[kvChannel(j)] += dInS[o][j];
                if (dInD[o] != null) for (int j = 0; j < dInD[o].length; j++) g.outShift()[kvChannel(j)] += dInD[o][j];
                continue;
            }
            if (dInS[li] != null) addInto(p.inScale() == attnScale ? g.attnScale() : g.mlpScale(), dInS[li]);
            if (dInD[li] != null) addInto(p.inShift() == attnShift ? g.attnShift() : g.mlpShift(), dInD[li]);
        }
        rowBack(Proj.V, dRowR, (c, dr) -> g.outScale()[c] += -dr / (outScale[c] * outScale[c]));
        if (outShift != null) {
            int v = fp.layerOf[Proj.V.ordinal()];
            int[] rows = fp.rowsOf[Proj.V.ordinal()];
            if (dRowD[v] != null) for (int c = 0; c < kvChannels; c++) g.outShift()[c] += dRowD[v][rows == null ? c : rows[c]];
        }
        if (qkScale != null) {
            rowBack(Proj.Q, dRowR, (c, dr) -> {
                int k = qkParam(kvChannel(c));
                g.qkScale()[k] += -dr / (qkScale[k] * qkScale[k]);
            });
            rowBack(Proj.K, dRowR, (c, dr) -> g.qkScale()[qkParam(c)] += dr);
        }
        // norms: w' = w/s, b' = (b − δ)/s
        normBack(a.attnNorm, dAttn, attnScale, g.attnScale(), g.attnShift());
        if (fp.mlpNorm != null) normBack(a.mlpNorm, dMlp, mlpScale, g.mlpScale(), g.mlpShift());
        return g;
    }

    private interface RowGrad {
        void add(int channel, float dFactor);
    }

    private void rowBack(Proj p, float[][] dRowR, RowGrad sink) {
        int li = fp.layerOf[p.ordinal()];
        if (dRowR[li] == null) return;
        int[] rows = fp.rowsOf[p.ordinal()];
        int count = rows == null ? fp.layers.get(li).out() : rows.length;
        for (int c = 0; c < count; c++) sink.add(c, dRowR[li][rows == null ? c : rows[c]]);
    }

    private static void addInto(float[] target, float[] grad) {
        for (int i = 0; i < grad.length; i++) target[i] += grad[i];
    }

    private static void normBack(NormParams transformed, NormParams d, float[] s, float[] ds, float[] dd) {
        for (int i = 0; i < s.length; i++) {
            double g = -(double) d.w()[i] * transformed.w()[i] / s[i];
            if (d.b() != null) {
                g += -(double) d.b()[i] * transformed.b()[i] / s[i];
                if (dd != null) dd[i] += -d.b()[i] / s[i];
            }
            ds[i] += (float) g;
        }
    }

    private static float[] zerosLike(float[] a) {
        return a == null ? null : new float[a.length];
    }

    private static float[] toFloat(double[] v) {
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) out[i] = (float) v[i];
        return out;
    }
}
