package io.blockquant.algo.omniquant;

import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.algo.omniquant.HeapBlock.Layer;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.ArrayList;
import java.util.List;

/**
 * An {@link OmniQuantObjective} resident on a backend for a block's whole training: the full-precision weights,
 * the learnable vectors (LWC's γ, β; LET's scales and shifts) and, in {@link AdamW}, their moments are backend
 * tensors, and a step runs LET (eq. 4–6), LWC (eq. 2–3), the block's forward and backward, the chain rule back
 * through both, and the optimizer as backend operations: only the loss (and the calibration windows) cross
 * between the Java heap and the backend. {@link #download} writes the learned vectors back into the objective.
 *
 * <p>The weights are held per projection ({@link Proj}), so Falcon's fused query_key_value is three row subsets
 * here, each with the γ, β of its rows: LWC works per row, so this is the same quantizer as on the stored layer,
 * and AdamW is element-wise, so the same optimizer.
 */
public final class ResidentObjective implements AutoCloseable {

    private static final int P = Proj.values().length;

    private final OmniQuantObjective objective;
    private final TensorBackend be;
    private final HeapBlock fp;
    private final EquivalentTransform let;
    /** Full-precision weight and bias per projection (null: absent). */
    private final Tensor[] w = new Tensor[P], b = new Tensor[P];
    private final Tensor attnW, attnB, mlpW, mlpB;
    /** LWC's learnable vectors per projection, its group size and bits. */
    private final Tensor[] gamma = new Tensor[P], beta = new Tensor[P];
    private final int[] group = new int[P];
    private final int bits;
    /** LET's learnable vectors (null: not part of the transformation). */
    private final Tensor attnScale, attnShift, mlpScale, mlpShift, outScale, outShift, qkScale, downScale;
    /** Output projection's input column → value channel; query/key row → qk scale entry. */
    private final int[] outColumns, qRows, kRows;
    private final int kvChannels;
    private final List<Tensor> lwcParams = new ArrayList<>(), letParams = new ArrayList<>();
    private final List<Tensor> owned = new ArrayList<>();
    /** Whether the {@link #optimizer} made last updates LWC's vectors. */
    private boolean trainsLwc = true;

    ResidentObjective(OmniQuantObjective objective, TensorBackend be) {
        this.objective = objective;
        this.be = be;
        this.fp = objective.fp;
        this.let = objective.let;
        this.bits = objective.clips[0].spec.bits();
        for (Proj p : Proj.values()) {
            int li = fp.layerOf[p.ordinal()];
            if (li < 0) continue;
            Layer l = fp.layers.get(li);
            int[] rows = fp.rowsOf[p.ordinal()];
            int out = rows == null ? l.out() : rows.length;
            LearnableClipping clip = objective.clips[li];
            w[p.ordinal()] = own(be.fromFloats(HeapBlock.selectRows(l.w(), l.in(), rows), out, l.in()));
            if (l.b() != null) b[p.ordinal()] = own(be.fromFloats(HeapBlock.selectRows(l.b(), 1, rows), out));
            group[p.ordinal()] = clip.group;
            gamma[p.ordinal()] = own(be.fromFloats(HeapBlock.selectRows(clip.gamma, clip.groups, rows), (long) out * clip.groups));
            beta[p.ordinal()] = own(be.fromFloats(HeapBlock.selectRows(clip.beta, clip.groups, rows), (long) out * clip.groups));
            lwcParams.add(gamma[p.ordinal()]);
            lwcParams.add(beta[p.ordinal()]);
        }
        attnW = vector(fp.attnNorm.w());
        attnB = vector(fp.attnNorm.b());
        mlpW = fp.mlpNorm == null ? null : vector(fp.mlpNorm.w());
        mlpB = fp.mlpNorm == null ? null : vector(fp.mlpNorm.b());
        if (let == null) {
            attnScale = attnShift = mlpScale = mlpShift = outScale = outShift = qkScale = downScale = null;
            outColumns = qRows = kRows = null;
            kvChannels = 0;
            return;
        }
        attnScale = learnable(let.attnScale);
        attnShift = learnable(let.attnShift);
        mlpScale = learnable(let.mlpScale);
        mlpShift = learnable(let.mlpShift);
        outScale = learnable(let.outScale);
        outShift = learnable(let.outShift);
        qkScale = learnable(let.qkScale);
        downScale = learnable(let.downScale);
        kvChannels = let.kvChannels;
        outColumns = new int[fp.layer(Proj.O).in()];
        for (int j = 0; j < outColumns.length; j++) outColumns[j] = let.kvChannel(j);
        qRows = new int[(int) w[Proj.Q.ordinal()].size(0)];
        for (int c = 0; c < qRows.length; c++) qRows[c] = let.qkParam(let.kvChannel(c));
        kRows = new int[(int) w[Proj.K.ordinal()].size(0)];
        for (int c = 0; c < kRows.length; c++) kRows[c] = let.qkParam(c);
    }

    private Tensor own(Tensor t) {
        owned.add(t);
        return t;
    }

    private Tensor vector(float[] v) {
        return v == null ? null : own(be.fromFloats(v, v.length));
    }

    private Tensor learnable(float[] v) {
        Tensor t = vector(v);
        if (t != null) letParams.add(t);
        return t;
    }

    /** LWC's γ, β per projection (in {@link Proj} order), as the optimizer updates them. */
    public List<Tensor> lwcParameters() {
        return lwcParams;
    }

    /** LET's vectors in {@link EquivalentTransform#parameters()} order. */
    public List<Tensor> letParameters() {
        return letParams;
    }

    /**
     * AdamW over the vectors that train: LWC's γ, β at {@code lwcLr} when {@code lwc}, LET's at {@code letLr}. {@link #step}
     * updates exactly these.
     */
    public AdamW optimizer(boolean lwc, double lwcLr, double letLr, double weightDecay) {
        List<Tensor> params = new ArrayList<>();
        List<Double> lrs = new ArrayList<>();
        if (lwc) for (Tensor p : lwcParams) { params.add(p); lrs.add(lwcLr); }
        for (Tensor p : letParams) { params.add(p); lrs.add(letLr); }
        trainsLwc = lwc;
        return new AdamW(be, params, lrs.stream().mapToDouble(Double::doubleValue).toArray(), weightDecay);
    }

    /**
     * One training step on a batch's windows ({@code x}, {@code target} {@code [batch·seq, hidden]} on the backend): the
     * gradients, {@code opt}'s update ({@link #optimizer}) and LET's scales kept away from zero. Returns the loss; a
     * loss that is not finite updates nothing.
     */
    public double step(Tensor x, Tensor target, int batch, int seq, AdamW opt) {
        Gradients g = evaluate(x, target, batch, seq, true, false);
        if (!Double.isFinite(g.loss())) return g.loss();
        List<Tensor> grads = new ArrayList<>();
        if (trainsLwc) grads.addAll(g.lwc());
        grads.addAll(g.let());
        opt.step(grads);
        truncateScales();
        return g.loss();
    }

    /** The loss, the output when asked for, and the gradients in the orders of the two parameter lists. */
    public record Gradients(double loss, float[] output, List<Tensor> lwc, List<Tensor> let) {}

    /** One projection's LET vectors (eq. 4–6) from the learnable ones: what {@link TensorBackend#scaleShiftLinear} takes. */
    private record Let(Tensor colScale, Tensor colShift, Tensor rowFactor, Tensor rowShift) {
        boolean identity() {
            return colScale == null && colShift == null && rowFactor == null && rowShift == null;
        }
    }

    private Let[] effective(Tensor invOut, Tensor invQk, Tensor invDown) {
        Let[] out = new Let[P];
        for (Proj p : Proj.values()) {
            if (w[p.ordinal()] == null) continue;
            Tensor cs = null, cd = null, rf = null, rd = null;
            if (let != null) {
                if (let.readers.attnNorm().contains(p)) {
                    cs = attnScale;
                    cd = attnShift;
                } else if (let.readers.mlpNorm().contains(p)) {
                    cs = mlpScale;
                    cd = mlpShift;
                } else if (p == Proj.O) {
                    // v → output projection: each input column takes its value channel's scale and shift
                    cs = gather(outScale, outColumns);
                    cd = outShift == null ? null : gather(outShift, outColumns);
                } else if (p == Proj.DOWN) {
                    cs = downScale;                  // up → down: down's columns · s
                }
                if (p == Proj.V) {
                    rf = invOut;
                    rd = outShift;
                } else if (p == Proj.Q && qkScale != null) {
                    rf = gather(invQk, qRows);       // eq. 6: q rows / s
                } else if (p == Proj.K && qkScale != null) {
                    rf = gather(qkScale, kRows);     // eq. 6: k rows · s
                } else if (p == Proj.UP) {
                    rf = invDown;                    // up's rows / s
                }
            }
            out[p.ordinal()] = new Let(cs, cd, rf, rd);
        }
        return out;
    }

    private Tensor gather(Tensor v, int[] index) {
        return be.reshape(be.selectColumns(be.reshape(v, 1, v.length()), index), index.length);
    }

    private Tensor scatter(Tensor g, int[] index, int width) {
        return be.reshape(be.scatterAddColumns(be.reshape(g, 1, g.length()), index, width), width);
    }

    private Tensor plus(Tensor sum, Tensor add) {
        return add == null ? sum : sum == null ? add : be.add(sum, add);
    }

    /**
     * Loss and, when asked for, gradients of one batch ({@code batch} windows of {@code seq} tokens as rows of x
     * and target), in the caller's scratch scope: the gradient tensors live until it ends.
     */
    public Gradients evaluate(Tensor x, Tensor target, int batch, int seq, boolean gradients, boolean keepOutput) {
        Tensor invOut = outScale == null ? null : be.reciprocal(outScale);
        Tensor invQk = qkScale == null ? null : be.reciprocal(qkScale);
        Tensor invDown = downScale == null ? null : be.reciprocal(downScale);
        Let[] lets = effective(invOut, invQk, invDown);
        Tensor[] w2 = new Tensor[P], b2 = new Tensor[P], wq = new Tensor[P];
        for (Proj p : Proj.values()) {
            int i = p.ordinal();
            if (w[i] == null) continue;
            Let e = lets[i];
            if (e.identity()) {
                w2[i] = w[i];
                b2[i] = b[i];
            } else {
                Tensor[] t = be.scaleShiftLinear(w[i], b[i], e.colScale(), e.colShift(), e.rowFactor(), e.rowShift()); // eq. 4–6
                w2[i] = t[0];
                b2[i] = t[1];
            }
            wq[i] = be.fakeQuantizeClipped(w2[i], gamma[i], beta[i], group[i], bits);                          // eq. 2–3
        }
        // norms: w' = w/s, b' = (b − δ)/s (eq. 5)
        Tensor attnCentred = attnB == null || attnShift == null ? attnB : be.sub(attnB, attnShift);
        Tensor mlpCentred = mlpB == null || mlpShift == null ? mlpB : be.sub(mlpB, mlpShift);
        Tensor[] attnNorm = {over(attnW, attnScale), over(attnCentred, attnScale)};
        Tensor[] mlpNorm = {over(mlpW, mlpScale), over(mlpCentred, mlpScale)};
        BlockGraph.Params params = new BlockGraph.Params(attnNorm[0], attnNorm[1], mlpNorm[0], mlpNorm[1], wq, b2);
        BlockGraph.Result r = BlockGraph.run(fp.spec, fp.rms, fp.eps, params, x, target, batch, seq, objective.acts, gradients,
                keepOutput);
        if (!gradients) return new Gradients(r.loss(), r.output(), null, null);

        List<Tensor> lwcGrads = new ArrayList<>();
        Tensor[] dW2 = new Tensor[P];
        for (Proj p : Proj.values()) {
            int i = p.ordinal();
            if (w[i] == null) continue;
            Tensor[] g = be.fakeQuantizeClippedBackward(w2[i], gamma[i], beta[i], group[i], bits, r.weight()[i]);
            dW2[i] = g[0];
            lwcGrads.add(g[1]);
            lwcGrads.add(g[2]);
        }
        if (let == null) return new Gradients(r.loss(), r.output(), lwcGrads, List.of());

        Tensor gAttnS = null, gAttnD = null, gMlpS = null, gMlpD = null, gOutS = null, gOutD = null, gQk = null, gDown = null;
        Tensor dInvOut = null, dInvQk = null, dInvDown = null;
        for (Proj p : Proj.values()) {
            int i = p.ordinal();
            Let e = lets[i];
            if (e == null || e.identity()) continue;
            Tensor[] g = be.scaleShiftLinearBackward(w[i], b[i], e.colScale(), e.colShift(), e.rowFactor(), e.rowShift(),
                    dW2[i], r.bias()[i]);
            if (e.colScale() == null) {
                // rows only (q, k, v without a norm's scale): nothing to reduce onto a column vector
            } else if (e.colScale() == attnScale) {
                gAttnS = plus(gAttnS, g[0]);
                gAttnD = plus(gAttnD, g[1]);
            } else if (e.colScale() == mlpScale) {
                gMlpS = plus(gMlpS, g[0]);
                gMlpD = plus(gMlpD, g[1]);
            } else if (p == Proj.O) {
                gOutS = plus(gOutS, scatter(g[0], outColumns, kvChannels));
                if (g[1] != null) gOutD = plus(gOutD, scatter(g[1], outColumns, kvChannels));
            } else if (p == Proj.DOWN) {
                gDown = plus(gDown, g[0]);
            }
            if (p == Proj.V) {
                dInvOut = g[2];
                gOutD = plus(gOutD, g[3]);
            } else if (p == Proj.Q && g[2] != null) {
                dInvQk = plus(dInvQk, scatter(g[2], qRows, kvChannels));
            } else if (p == Proj.K && g[2] != null) {
                gQk = plus(gQk, scatter(g[2], kRows, kvChannels));
            } else if (p == Proj.UP && g[2] != null) {
                dInvDown = g[2];
            }
        }
        // d(1/s)/ds = −1/s²
        gOutS = plus(gOutS, inverseBackward(dInvOut, invOut));
        if (qkScale != null) gQk = plus(gQk, inverseBackward(dInvQk, invQk));
        if (downScale != null) gDown = plus(gDown, inverseBackward(dInvDown, invDown));
        Tensor[] na = normBackward(r.attnNormWeight(), r.attnNormBias(), attnNorm, attnScale, attnShift);
        gAttnS = plus(gAttnS, na[0]);
        gAttnD = plus(gAttnD, na[1]);
        if (mlpScale != null) {
            Tensor[] nm = normBackward(r.mlpNormWeight(), r.mlpNormBias(), mlpNorm, mlpScale, mlpShift);
            gMlpS = plus(gMlpS, nm[0]);
            gMlpD = plus(gMlpD, nm[1]);
        }
        List<Tensor> letGrads = new ArrayList<>();
        Tensor[][] pairs = {{attnScale, gAttnS}, {attnShift, gAttnD}, {mlpScale, gMlpS}, {mlpShift, gMlpD},
            {outScale, gOutS}, {outShift, gOutD}, {qkScale, gQk}, {downScale, gDown}};
        for (Tensor[] pair : pairs) {
            if (pair[0] == null) continue;
            letGrads.add(pair[1] == null ? be.zeros(pair[0].shape()) : pair[1]);
        }
        return new Gradients(r.loss(), r.output(), lwcGrads, letGrads);
    }

    private Tensor over(Tensor v, Tensor s) {
        return v == null || s == null ? v : be.div(v, s);
    }

    private Tensor inverseBackward(Tensor dInv, Tensor inv) {
        return dInv == null ? null : be.scale(be.mul(be.mul(dInv, inv), inv), -1f);
    }

    /**
     * Norm fold {@code w' = w/s}, {@code b' = (b − δ)/s} from its result {@code folded = {w', b'}}: {@code {dL/ds, dL/dδ}}
     * with {@code ∂w'/∂s = −w'/s}, {@code ∂b'/∂s = −b'/s}, {@code ∂b'/∂δ = −1/s} (dδ null without a shift).
     */
    private Tensor[] normBackward(Tensor dw, Tensor db, Tensor[] folded, Tensor s, Tensor shift) {
        Tensor dot = be.mul(dw, folded[0]);
        if (db != null) dot = be.add(dot, be.mul(db, folded[1]));
        Tensor dShift = shift == null || db == null ? null : be.scale(be.div(db, s), -1f);
        return new Tensor[] {be.scale(be.div(dot, s), -1f), dShift};
    }

    /** LET's scales kept away from zero after an update (the reference's truncate_number, |s| ≥ 1e-2). */
    public void truncateScales() {
        for (Tensor s : new Tensor[] {attnScale, mlpScale, outScale, qkScale, downScale}) {
            if (s != null) be.clampAwayFromZero(s, EquivalentTransform.MIN_ABS_SCALE);
        }
    }

    /**
     * The projections' per-row vectors (γ or β, or their gradients, in {@link #lwcParameters} order) written into
     * per stored layer arrays (Falcon: rows of the fused layer).
     */
    void perLayer(List<Tensor> perProjection, boolean gammaSlot, float[][] into) {
        int k = 0;
        for (Proj p : Proj.values()) {
            int li = fp.layerOf[p.ordinal()];
            if (li < 0) continue;
            int groups = objective.clips[li].groups;
            float[] part = perProjection.get(2 * k + (gammaSlot ? 0 : 1)).toFloats();
            int[] rows = fp.rowsOf[p.ordinal()];
            for (int i = 0; i < part.length / groups; i++) {
                System.arraycopy(part, i * groups, into[li], (rows == null ? i : rows[i]) * groups, groups);
            }
            k++;
        }
    }

    /** The learned vectors back into the objective's heap arrays (what {@link OmniQuantObjective#fold} reads). */
    public void download() {
        int n = objective.clips.length;
        float[][] g = new float[n][], bt = new float[n][];
        for (int i = 0; i < n; i++) {
            g[i] = objective.clips[i].gamma;
            bt[i] = objective.clips[i].beta;
        }
        perLayer(lwcParams, true, g);
        perLayer(lwcParams, false, bt);
        if (let == null) return;
        List<float[]> heap = let.parameters();
        for (int i = 0; i < heap.size(); i++) System.arraycopy(letParams.get(i).toFloats(), 0, heap.get(i), 0, heap.get(i).length);
    }

    @Override
    public void close() {
        owned.forEach(Tensor::close);
        owned.clear();
    }
}
