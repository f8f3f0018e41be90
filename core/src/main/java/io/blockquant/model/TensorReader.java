package io.blockquant.model;

import io.blockquant.nn.Linear;
import io.blockquant.nn.Norm;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;

/**
 * Reads a model's tensors by names relative to {@code prefix} onto a backend, each checked against the shape
 * the spec expects: what a {@link FamilyDescriptor} builds its stem and blocks from.
 */
public record TensorReader(WeightSource source, TensorBackend backend, String prefix) {

    /** The same source read below {@code path} (e.g. a block's {@code layers.3.}). */
    public TensorReader under(String path) {
        return new TensorReader(source, backend, prefix + path);
    }

    public boolean has(String name) {
        return source.has(prefix + name);
    }

    public float[] floats(String name, long... shape) {
        return source.readFloats(prefix + name, shape);
    }

    public Tensor tensor(String name, long... shape) {
        return backend.fromFloats(floats(name, shape), shape);
    }

    /** Module {@code module}'s {@code weight [out, in]} and, when {@code bias}, its {@code bias [out]}. */
    public Linear linear(String module, int out, int in, boolean bias) {
        Tensor w = tensor(module + ".weight", out, in);
        Tensor b = bias ? tensor(module + ".bias", out) : null;
        return new Linear(module, w, b);
    }

    public Norm rmsNorm(String module, int width, float eps) {
        return Norm.rms(tensor(module + ".weight", width), eps);
    }

    public Norm layerNorm(String module, int width, float eps) {
        return Norm.layer(tensor(module + ".weight", width), tensor(module + ".bias", width), eps);
    }
}
