package io.blockquant.quant;

/**
 * An equivalent transformation's channel scales and shifts folded into one linear {@code y = x·Wᵀ + b}
 * (OmniQuant's LET, Shao et al., 2023, eq. 4–5, and the row scaling of eq. 6 and of the value/output pair):
 * the input {@code X̃ = (X − δ)⊘s} makes {@code W1 = W·diag(s)}, {@code b1 = b + W·δ} (eq. 5); a following
 * scaling of the output channels by {@code r} with shift {@code δr} makes {@code W2 = diag(r)·W1},
 * {@code b2 = r⊙(b1 − δr)}. Any of s, δ, r, δr may be null (identity). Pure heap math with the float/double
 * choices the CPU backend's op and the heap fold share; the CUDA kernels mirror it.
 */
public final class ScaleShift {

    private ScaleShift() {}

    /** {@code {W2, b2}} for W {@code [out, in]}; b2 is null when b is null and nothing makes one. */
    public static float[][] forward(float[] w, int out, int in, float[] b, float[] s, float[] d, float[] r, float[] dr) {
        float[] w1 = w;
        if (s != null) {
            w1 = new float[w.length];
            for (int o = 0; o < out; o++) for (int c = 0; c < in; c++) w1[o * in + c] = w[o * in + c] * s[c];
        }
        float[] b1 = shiftedBias(w, out, in, b, d);
        float[] w2 = w1;
        if (r != null) {
            w2 = new float[w.length];
            for (int o = 0; o < out; o++) {
                float f = r[o];
                for (int c = 0; c < in; c++) w2[o * in + c] = w1[o * in + c] * f;
            }
        }
        float[] b2 = b1;
        if (b1 != null && (r != null || dr != null)) {
            b2 = new float[out];
            for (int o = 0; o < out; o++) b2[o] = (b1[o] - (dr == null ? 0f : dr[o])) * (r == null ? 1f : r[o]);
        }
        return new float[][] {w2, b2};
    }

    /** {@code b1 = b + W·δ} (eq. 5), accumulated in float64; b itself when δ is null. */
    private static float[] shiftedBias(float[] w, int out, int in, float[] b, float[] d) {
        if (d == null) return b;
        float[] b1 = b == null ? new float[out] : b.clone();
        for (int o = 0; o < out; o++) {
            double acc = 0;
            for (int c = 0; c < in; c++) acc += (double) w[o * in + c] * d[c];
            b1[o] += (float) acc;
        }
        return b1;
    }

    /**
     * Backward of {@link #forward} from {@code dW2}, {@code db2} (null when there is no bias): {@code {ds, dδ, dr, dδr}},
     * each null where its input was null (dδ also where there is no bias gradient).
     */
    public static float[][] backward(float[] w, int out, int in, float[] b, float[] s, float[] d, float[] r, float[] dr,
                                     float[] dW2, float[] db2) {
        float[] g1 = dW2, gb1 = db2, gr = null, gdr = null;
        if (r != null || dr != null) {
            float[] b1 = shiftedBias(w, out, in, b, d);
            if (r != null) {
                gr = new float[out];
                g1 = new float[dW2.length];
            }
            if (db2 != null) gb1 = new float[out];
            if (dr != null) gdr = new float[out];
            for (int o = 0; o < out; o++) {
                float f = r == null ? 1f : r[o];
                if (r != null) {
                    // ∂b2/∂r = b1 − δr, ∂W2/∂r = W1 (row o)
                    double acc = 0;
                    for (int c = 0; c < in; c++) {
                        float w1 = s == null ? w[o * in + c] : w[o * in + c] * s[c];
                        acc += (double) dW2[o * in + c] * w1;
                        g1[o * in + c] = dW2[o * in + c] * f;
                    }
                    if (db2 != null) acc += (double) db2[o] * (b1[o] - (dr == null ? 0f : dr[o]));
                    gr[o] = (float) acc;
                }
                if (db2 != null) {
                    gb1[o] = db2[o] * f;
                    if (dr != null) gdr[o] = -db2[o] * f;
                }
            }
        }
        float[] gs = null, gd = null;
        if (s != null) {
            double[] acc = new double[in];
            for (int o = 0; o < out; o++) for (int c = 0; c < in; c++) acc[c] += (double) g1[o * in + c] * w[o * in + c];
            gs = toFloat(acc);
        }
        if (d != null && gb1 != null) {
            double[] acc = new double[in];
            for (int o = 0; o < out; o++) for (int c = 0; c < in; c++) acc[c] += (double) w[o * in + c] * gb1[o];
            gd = toFloat(acc);
        }
        return new float[][] {gs, gd, gr, gdr};
    }

    private static float[] toFloat(double[] v) {
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) out[i] = (float) v[i];
        return out;
    }
}
