package io.blockquant.algo.omniquant;

import java.util.List;

/**
 * AdamW as {@code torch.optim.AdamW} (decoupled weight decay {@code p −= lr·wd·p}, then the bias-corrected
 * Adam step; β = (0.9, 0.999), ε = 1e-8), over heap parameter vectors, each with its own learning rate.
 */
public final class AdamW {

    static final double BETA1 = 0.9, BETA2 = 0.999, EPS = 1e-8;

    private final List<float[]> params;
    private final double[] lr;
    private final double weightDecay;
    private final double[][] m, v;
    private int step;

    public AdamW(List<float[]> params, double[] lr, double weightDecay) {
        this.params = params;
        this.lr = lr;
        this.weightDecay = weightDecay;
        this.m = new double[params.size()][];
        this.v = new double[params.size()][];
        for (int i = 0; i < params.size(); i++) {
            m[i] = new double[params.get(i).length];
            v[i] = new double[params.get(i).length];
        }
    }

    /** One update from gradients in the same order and shapes as the parameters. */
    public void step(List<float[]> grads) {
        step++;
        double c1 = 1 - Math.pow(BETA1, step), c2 = 1 - Math.pow(BETA2, step);
        for (int k = 0; k < params.size(); k++) {
            float[] p = params.get(k), g = grads.get(k);
            double a = lr[k];
            for (int i = 0; i < p.length; i++) {
                double pi = p[i] * (1 - a * weightDecay);
                m[k][i] = BETA1 * m[k][i] + (1 - BETA1) * g[i];
                v[k][i] = BETA2 * v[k][i] + (1 - BETA2) * (double) g[i] * g[i];
                pi -= a * (m[k][i] / c1) / (Math.sqrt(v[k][i] / c2) + EPS);
                p[i] = (float) pi;
            }
        }
    }
}
