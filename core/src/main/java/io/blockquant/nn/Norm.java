package io.blockquant.nn;

import io.blockquant.tensor.Tensor;

/** RMSNorm ({@code bias == null, rms}) or LayerNorm, over the hidden dimension. */
public record Norm(Tensor weight, Tensor bias, float eps, boolean rms) {

    public static Norm rms(Tensor weight, float eps) {
        return new Norm(weight, null, eps, true);
    }

    public static Norm layer(Tensor weight, Tensor bias, float eps) {
        return new Norm(weight, bias, eps, false);
    }

    public Tensor forward(Tensor x) {
        return rms ? weight.backend().rmsNorm(x, weight, eps) : weight.backend().layerNorm(x, weight, bias, eps);
    }
}
