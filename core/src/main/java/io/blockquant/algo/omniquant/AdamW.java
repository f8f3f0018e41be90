package io.blockquant.algo.omniquant;

import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.ArrayList;
import java.util.List;

/**
 * AdamW as {@code torch.optim.AdamW} (decoupled weight decay {@code p −= lr·wd·p}, then the bias-corrected
 * Adam step; β = (0.9, 0.999), ε = 1e-8), over parameter tensors of a backend, each with its own learning rate:
 * the moments live beside the parameters and every update is the backend's in-place {@code adamW}, so a step
 * moves nothing across to the Java heap.
 */
public final class AdamW implements AutoCloseable {

    static final double BETA1 = 0.9, BETA2 = 0.999, EPS = 1e-8;

    private final TensorBackend be;
    private final List<Tensor> params;
    private final double[] lr;
    private final double weightDecay;
    private final List<Tensor> m = new ArrayList<>(), v = new ArrayList<>();
    private int step;

    public AdamW(TensorBackend be, List<Tensor> params, double[] lr, double weightDecay) {
        if (params.size() != lr.length) throw new IllegalArgumentException(params.size() + " parameters, " + lr.length + " learning rates");
        this.be = be;
        this.params = params;
        this.lr = lr;
        this.weightDecay = weightDecay;
        for (Tensor p : params) {
            m.add(be.zeros(p.shape()));
            v.add(be.zeros(p.shape()));
        }
    }

    /** One update from gradients in the same order and shapes as the parameters. */
    public void step(List<Tensor> grads) {
        if (grads.size() != params.size()) throw new IllegalArgumentException(grads.size() + " gradients for " + params.size() + " parameters");
        step++;
        for (int k = 0; k < params.size(); k++) {
            be.adamW(params.get(k), grads.get(k), m.get(k), v.get(k), step, lr[k], BETA1, BETA2, EPS, weightDecay);
        }
    }

    @Override
    public void close() {
        m.forEach(Tensor::close);
        v.forEach(Tensor::close);
    }
}
