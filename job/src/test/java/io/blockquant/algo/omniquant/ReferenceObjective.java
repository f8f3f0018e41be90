package io.blockquant.algo.omniquant;

import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.model.Family;
import io.blockquant.model.ModelSpec;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.quant.TokenQuant;
import java.util.ArrayList;
import java.util.List;

/**
 * A straightforward float64 re-implementation of OmniQuant's block objective, written per projection role
 * (not per stored layer as the production code), for finite-difference gradient checks.
 *
 * <p>Autograd's gradient (and so the straight-through estimator) is the exact derivative of the function
 * with every discrete decision held fixed: the rounding offsets {@code round(t) − t}, the rounded zero
 * points, which elements the clamp cuts, which element is the max/min, the activation quantization's
 * offsets. {@link #loss} records those decisions on the first call and replays them afterwards, so its
 * central differences are the gradient the backward must produce.
 */
final class ReferenceObjective {

    final HeapBlock fp;
    final ModelSpec spec;
    final int bits, group, abits, batch, seq;
    final double[] x, target;
    /** Linear inputs and attention's Q, K, V as production quantizes them (the rules re-done here in float64). */
    final ActivationQuant acts;
    /** Parameter vectors in the production order: γ, β per layer, then the LET vectors present. */
    final List<double[]> params = new ArrayList<>();
    final double[][] gamma, beta;
    double[] sA, dA, sM, dM, sO, dO, sQK, sD;

    private final List<Object> tape = new ArrayList<>();
    private int pos;
    private boolean recording = true;

    ReferenceObjective(HeapBlock fp, OmniQuantObjective prod, float[] x, float[] target, int bits, int group, int abits,
                       int batch, int seq) {
        this(fp, prod, x, target, bits, group, ActivationQuant.of(abits, null, false, false, 0, null), batch, seq);
    }

    ReferenceObjective(HeapBlock fp, OmniQuantObjective prod, float[] x, float[] target, int bits, int group, ActivationQuant acts,
                       int batch, int seq) {
        this.acts = acts;
        int abits = acts.linearInputs() == null ? 16 : acts.linearInputs().bits();
        this.fp = fp;
        this.spec = fp.spec;
        this.bits = bits;
        this.group = group;
        this.abits = abits;
        this.batch = batch;
        this.seq = seq;
        this.x = toDouble(x);
        this.target = toDouble(target);
        int n = fp.layers.size();
        gamma = new double[n][];
        beta = new double[n][];
        for (int i = 0; i < n; i++) {
            gamma[i] = toDouble(prod.clips[i].gamma);
            beta[i] = toDouble(prod.clips[i].beta);
            params.add(gamma[i]);
            params.add(beta[i]);
        }
        EquivalentTransform let = prod.let;
        if (let != null) {
            sA = add(let.attnScale);
            dA = add(let.attnShift);
            sM = add(let.mlpScale);
            dM = add(let.mlpShift);
            sO = add(let.outScale);
            dO = add(let.outShift);
            sQK = add(let.qkScale);
            sD = add(let.downScale);
        }
    }

    private double[] add(float[] v) {
        if (v == null) return null;
        double[] d = toDouble(v);
        params.add(d);
        return d;
    }

    static double[] toDouble(float[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < v.length; i++) d[i] = v[i];
        return d;
    }

    @SuppressWarnings("unchecked")
    private <T> T decision(java.util.function.Supplier<T> make) {
        if (recording) {
            T v = make.get();
            tape.add(v);
            return v;
        }
        return (T) tape.get(pos++);
    }

    double loss() {
        pos = 0;
        double[] y = forward();
        recording = false;
        double s = 0;
        for (int i = 0; i < y.length; i++) s += (y[i] - target[i]) * (y[i] - target[i]);
        return s / y.length;
    }

    // ---- LET per role (eq. 4–6) ------------------------------------------------------------------------

    int d() {
        return spec.headDim();
    }

    int groups() {
        return spec.family() == Family.OPT ? 1 : spec.numHeads() / spec.numKvHeads();
    }

    /** The key/value channel a query channel (or output-projection input) belongs to. */
    int kvOf(int queryChannel) {
        return (queryChannel / d() / groups()) * d() + queryChannel % d();
    }

    /** The qk scale of a key channel: RoPE's pair (i, i + half) uses dim i's entry. */
    double qk(int kvChannel) {
        if (sQK == null) return 1;
        int half = spec.family() == Family.OPT ? 0 : spec.invFreq().length, i = kvChannel % d();
        return sQK[i >= half && i < 2 * half ? kvChannel - half : kvChannel];
    }

    record Mat(double[][] w, double[] b) {}

    Mat role(Proj p) {
        int li = fp.layerOf[p.ordinal()];
        HeapBlock.Layer l = fp.layers.get(li);
        int[] rows = fp.rowsOf[p.ordinal()];
        int out = rows == null ? l.out() : rows.length, in = l.in();
        double[][] w = new double[out][in];
        double[] b = l.b() == null ? null : new double[out];
        for (int r = 0; r < out; r++) {
            int sr = rows == null ? r : rows[r];
            for (int c = 0; c < in; c++) w[r][c] = l.w()[sr * in + c];
            if (b != null) b[r] = l.b()[sr];
        }
        return new Mat(w, b);
    }

    boolean sharedNorm() {
        return fp.mlpNorm == null;
    }

    /** The transformed (not yet quantized) weight and bias of a role. */
    Mat transformed(Proj p) {
        Mat m = role(p);
        double[][] w = m.w();
        double[] b = m.b();
        int out = w.length, in = w[0].length;
        if (sA == null) return m;
        double[] s = null, dlt = null;
        switch (p) {
            case Q: case K: case V: s = sA; dlt = dA; break;
            case GATE: case UP: s = sharedNorm() ? sA : sM; dlt = sharedNorm() ? dA : dM; break;
            case O:
                s = new double[in];
                for (int j = 0; j < in; j++) s[j] = sO[kvOf(j)];
                if (dO != null) {
                    dlt = new double[in];
                    for (int j = 0; j < in; j++) dlt[j] = dO[kvOf(j)];
                }
                break;
            case DOWN: s = sD; break;  // null without the up→down scale
            default:
        }
        double[][] w1 = new double[out][in];
        double[] b1 = b == null ? null : b.clone();
        for (int r = 0; r < out; r++) {
            for (int c = 0; c < in; c++) {
                w1[r][c] = s == null ? w[r][c] : w[r][c] * s[c];
                if (dlt != null) b1[r] += w[r][c] * dlt[c];
            }
        }
        for (int r = 0; r < out; r++) {
            double f = 1, shift = 0;
            if (p == Proj.V) {
                f = 1 / sO[r];
                shift = dO == null ? 0 : dO[r];
            } else if (p == Proj.Q) {
                f = 1 / qk(kvOf(r));
            } else if (p == Proj.K) {
                f = qk(r);
            } else if (p == Proj.UP && sD != null) {
                f = 1 / sD[r];
            }
            for (int c = 0; c < in; c++) w1[r][c] *= f;
            if (b1 != null) b1[r] = (b1[r] - shift) * f;
        }
        return new Mat(w1, b1);
    }

    // ---- LWC (eq. 2–3), per stored row and group ----------------------------------------------------

    record Lwc(double zero, int argMax, int argMin, int[] clampedLevel, double[] roundOffset) {}

    double[][] quantized(Proj p, double[][] w) {
        int li = fp.layerOf[p.ordinal()];
        int[] rows = fp.rowsOf[p.ordinal()];
        int in = w[0].length, g = group <= 0 ? in : group, groups = in / g, maxq = (1 << bits) - 1;
        double[][] out = new double[w.length][in];
        for (int r = 0; r < w.length; r++) {
            int sr = rows == null ? r : rows[r];
            for (int gi = 0; gi < groups; gi++) {
                int from = gi * g;
                int k = sr * groups + gi;
                double[] row = w[r];
                Lwc dec = decision(() -> {
                    int am = from, an = from;
                    for (int c = from; c < from + g; c++) {
                        if (row[c] > row[am]) am = c;
                        if (row[c] < row[an]) an = c;
                    }
                    double h = sig(gamma[li][k]) * row[am], l = sig(beta[li][k]) * row[an];
                    double scale = Math.max(1e-5, (h - l) / maxq);
                    double zero = Math.rint(-l / scale);
                    int[] lvl = new int[g];
                    double[] off = new double[g];
                    for (int c = 0; c < g; c++) {
                        double t = row[from + c] / scale, pre = Math.rint(t) + zero;
                        lvl[c] = pre < 0 ? 0 : pre > maxq ? maxq : -1;     // −1: not cut by the clamp
                        off[c] = Math.rint(t) - t;
                    }
                    return new Lwc(zero, am, an, lvl, off);
                });
                double h = sig(gamma[li][k]) * row[dec.argMax()], l = sig(beta[li][k]) * row[dec.argMin()];
                double scale = (h - l) / maxq;
                for (int c = 0; c < g; c++) {
                    int lv = dec.clampedLevel()[c];
                    out[r][from + c] = lv >= 0 ? scale * (lv - dec.zero()) : scale * (row[from + c] / scale + dec.roundOffset()[c]);
                }
            }
        }
        return out;
    }

    static double sig(double v) {
        return 1 / (1 + Math.exp(-v));
    }

    // ---- the block ---------------------------------------------------------------------------------

    double[][] linear(double[][] in, Proj p) {
        Mat t = transformed(p);
        double[][] w = quantized(p, t.w());
        double[][] out = new double[in.length][w.length];
        for (int r = 0; r < in.length; r++) {
            for (int o = 0; o < w.length; o++) {
                double s = t.b() == null ? 0 : t.b()[o];
                for (int c = 0; c < w[0].length; c++) s += in[r][c] * w[o][c];
                out[r][o] = s;
            }
        }
        return out;
    }

    /** Per-token fake quantization of every row (the linears' input rule) with its offsets held fixed (STE). */
    double[][] quantIn(double[][] a) {
        if (acts.linearInputs() == null) return a;
        double[][] out = new double[a.length][];
        for (int r = 0; r < a.length; r++) out[r] = quantRow(a[r], acts.linearInputs());
        return out;
    }

    /** A row's quantization decisions: its extremes, whether the scale sits at a clamp (then that scale), zero point, cut levels, rounding offsets. */
    record RowQuant(int argMax, int argMin, double fixedScale, double zero, int[] cutLevel, double[] roundOffset) {}

    /**
     * One row through a per-token quantizer as the OmniQuant reference's autograd differentiates it: the rounding
     * offsets {@code round(t) − t}, the zero point, which elements the clamp cuts and which are the extremes are
     * recorded once and replayed, the scale recomputed from the extremes (the reference's amin/amax without a
     * detach), so an element inside the range is {@code a + s·offset}, a cut one {@code s·(level − z)}.
     * Symmetric: {@code s = absmax/(2^(b−1) − 1)}, levels in [−2^(b−1), 2^(b−1) − 1]; asymmetric (the reference's
     * {@code UniformAffineQuantizer}): {@code s = clamp((max − min)/(2^b − 1), 1e-5, 1e4)}, {@code z = round(−min/s)},
     * levels in [0, 2^b − 1].
     */
    double[] quantRow(double[] a, TokenQuant q) {
        if (q == null) return a;
        if (q.format() != null) throw new UnsupportedOperationException("FP8 rows are not part of this reference");
        boolean asym = q.asymmetric();
        int qmax = asym ? (1 << q.bits()) - 1 : (1 << (q.bits() - 1)) - 1, qmin = asym ? 0 : -qmax - 1;
        RowQuant dec = decision(() -> {
            int am = 0, an = 0;
            for (int c = 0; c < a.length; c++) {
                if (asym ? a[c] > a[am] : Math.abs(a[c]) > Math.abs(a[am])) am = c;
                if (a[c] < a[an]) an = c;
            }
            double raw = asym ? (a[am] - a[an]) / qmax : Math.abs(a[am]) / qmax;
            if (!asym && raw == 0) return null;   // an all-zero row stays as it is
            double s = asym ? Math.max(1e-5, Math.min(1e4, raw)) : raw, z = asym ? Math.rint(-a[an] / s) : 0;
            int[] cut = new int[a.length];
            double[] off = new double[a.length];
            for (int c = 0; c < a.length; c++) {
                double t = a[c] / s, pre = Math.rint(t) + z;
                cut[c] = pre < qmin ? qmin : pre > qmax ? qmax : Integer.MIN_VALUE;
                off[c] = Math.rint(t) - t;
            }
            return new RowQuant(am, an, raw == s ? Double.NaN : s, z, cut, off);
        });
        if (dec == null) return a;
        double s = !Double.isNaN(dec.fixedScale()) ? dec.fixedScale()
                : asym ? (a[dec.argMax()] - a[dec.argMin()]) / qmax : Math.abs(a[dec.argMax()]) / qmax;
        double[] out = new double[a.length];
        for (int c = 0; c < a.length; c++) {
            int cut = dec.cutLevel()[c];
            out[c] = cut != Integer.MIN_VALUE ? s * (cut - dec.zero()) : a[c] + s * dec.roundOffset()[c];
        }
        return out;
    }

    double[][] norm(double[][] in, HeapBlock.NormParams n, double[] s, double[] dlt) {
        int h = in[0].length;
        double[][] out = new double[in.length][h];
        for (int r = 0; r < in.length; r++) {
            double mean = 0, var = 0;
            if (!fp.rms) {
                for (double v : in[r]) mean += v;
                mean /= h;
            }
            for (double v : in[r]) var += (v - mean) * (v - mean);
            var /= h;
            double inv = 1 / Math.sqrt(var + fp.eps);
            for (int c = 0; c < h; c++) {
                double w = n.w()[c] / (s == null ? 1 : s[c]);
                double b = n.b() == null ? 0 : (n.b()[c] - (dlt == null ? 0 : dlt[c])) / (s == null ? 1 : s[c]);
                out[r][c] = (in[r][c] - mean) * inv * w + b;
            }
        }
        return out;
    }

    double[][] attention(double[][] q, double[][] k, double[][] v) {
        int heads = spec.numHeads(), kvHeads = spec.family() == Family.OPT ? heads : spec.numKvHeads(), d = d();
        float[] inv = spec.family() == Family.OPT ? null : spec.invFreq();
        double[][] out = new double[q.length][heads * d];
        for (int b = 0; b < batch; b++) {
            for (int hh = 0; hh < heads; hh++) {
                int kh = hh / (heads / kvHeads);
                double[][] qs = new double[seq][], ks = new double[seq][], vs = new double[seq][];
                // per head and token, after RoPE: the reference's QuantMatMul operands
                for (int p = 0; p < seq; p++) {
                    qs[p] = quantRow(rope(slice(q[b * seq + p], hh * d, d), p, inv), acts.attention().query());
                    ks[p] = quantRow(rope(slice(k[b * seq + p], kh * d, d), p, inv), acts.attention().key());
                    vs[p] = quantRow(slice(v[b * seq + p], kh * d, d), acts.attention().value());
                }
                for (int i = 0; i < seq; i++) {
                    double[] sc = new double[i + 1];
                    double mx = Double.NEGATIVE_INFINITY, sum = 0;
                    for (int j = 0; j <= i; j++) {
                        double s = 0;
                        for (int c = 0; c < d; c++) s += qs[i][c] * ks[j][c];
                        sc[j] = s / Math.sqrt(d);
                        mx = Math.max(mx, sc[j]);
                    }
                    for (int j = 0; j <= i; j++) sum += sc[j] = Math.exp(sc[j] - mx);
                    for (int j = 0; j <= i; j++) {
                        for (int c = 0; c < d; c++) out[b * seq + i][hh * d + c] += sc[j] / sum * vs[j][c];
                    }
                }
            }
        }
        return out;
    }

    static double[] slice(double[] a, int from, int n) {
        return java.util.Arrays.copyOfRange(a, from, from + n);
    }

    static double[] rope(double[] x, int pos, float[] invFreq) {
        if (invFreq == null) return x;
        int half = invFreq.length;
        double[] out = x.clone();
        for (int i = 0; i < half; i++) {
            double a = pos * (double) invFreq[i], c = Math.cos(a), s = Math.sin(a);
            out[i] = x[i] * c - x[half + i] * s;
            out[half + i] = x[half + i] * c + x[i] * s;
        }
        return out;
    }

    static double erf(double z) {
        if (Math.abs(z) > 5) return Math.signum(z);
        double sum = 0, term = z; // Σ (−1)^n z^(2n+1) / (n! (2n+1))
        for (int n = 0; n < 200; n++) {
            sum += term / (2 * n + 1);
            term *= -z * z / (n + 1);
        }
        return 2 / Math.sqrt(Math.PI) * sum;
    }

    double act(double v) {
        switch (spec.activation()) {
            case SILU: return v / (1 + Math.exp(-v));
            case RELU: return Math.max(0, v);
            case GELU: return 0.5 * v * (1 + erf(v / Math.sqrt(2)));
            default: throw new AssertionError(spec.activation());
        }
    }

    double[] forward() {
        int h = fp.hidden(), rows = batch * seq;
        double[][] xin = new double[rows][h];
        for (int r = 0; r < rows; r++) for (int c = 0; c < h; c++) xin[r][c] = x[r * h + c];
        double[][] n = quantIn(norm(xin, fp.attnNorm, sA, dA));
        double[][] att = quantIn(attention(linear(n, Proj.Q), linear(n, Proj.K), linear(n, Proj.V)));
        double[][] o = linear(att, Proj.O);
        boolean falcon = spec.family() == Family.FALCON;
        double[][] hs = new double[rows][h];
        for (int r = 0; r < rows; r++) for (int c = 0; c < h; c++) hs[r][c] = xin[r][c] + (falcon ? 0 : o[r][c]);
        double[][] m = sharedNorm() ? n : quantIn(norm(hs, fp.mlpNorm, sM, dM));
        double[][] a;
        if (spec.family() == Family.LLAMA) {
            double[][] g = linear(m, Proj.GATE), u = linear(m, Proj.UP);
            a = new double[rows][g[0].length];
            for (int r = 0; r < rows; r++) for (int c = 0; c < g[0].length; c++) a[r][c] = act(g[r][c]) * u[r][c];
        } else {
            a = linear(m, Proj.UP);
            for (double[] row : a) for (int c = 0; c < row.length; c++) row[c] = act(row[c]);
        }
        double[][] dn = linear(quantIn(a), Proj.DOWN);
        double[] y = new double[rows * h];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < h; c++) y[r * h + c] = hs[r][c] + dn[r][c] + (falcon ? o[r][c] : 0);
        }
        return y;
    }
}
