package io.blockquant.tensor;

/**
 * Updates of learnable tensors where they live, for block-wise training (OmniQuant): the optimizer's step and the
 * constraints kept after it. Unlike the other roles these work in place on their first arguments, so a training
 * step moves no parameters, gradients or moments between the backend and the Java heap.
 */
public interface OptimizerOps {

    /**
     * One AdamW step in place, as {@code torch.optim.AdamW} (Loshchilov and Hutter's decoupled weight decay), on
     * tensors of one shape: {@code p ← p·(1 − lr·wd)}, {@code m ← β1·m + (1 − β1)·g}, {@code v ← β2·v + (1 − β2)·g²},
     * {@code p ← p − lr·(m/(1 − β1^t))/(√(v/(1 − β2^t)) + ε)}; {@code step} t counts from 1. Computed in float64,
     * stored in float32.
     */
    void adamW(Tensor p, Tensor g, Tensor m, Tensor v, int step, double lr, double beta1, double beta2, double eps,
               double weightDecay);

    /** In place: {@code |x| < min} becomes {@code ±min} (+min at zero), the OmniQuant reference's truncate_number on LET scales. */
    void clampAwayFromZero(Tensor t, float min);
}
