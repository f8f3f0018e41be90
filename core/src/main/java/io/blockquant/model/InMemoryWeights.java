package io.blockquant.model;

import java.util.Arrays;
import java.util.Map;
import java.util.Set;

/** Named tensors already in memory (values and shapes), e.g. a quantized model read back from a store. */
public record InMemoryWeights(String source, Map<String, float[]> values, Map<String, long[]> shapes) implements WeightSource, java.io.Serializable {

    @Override
    public boolean has(String tensor) {
        return values.containsKey(tensor);
    }

    @Override
    public Set<String> tensorNames() {
        return values.keySet();
    }

    @Override
    public float[] readFloats(String tensor, long... expectedShape) {
        float[] v = values.get(tensor);
        if (v == null) throw new ModelFormatException(source + ": tensor '" + tensor + "' is missing");
        if (expectedShape.length > 0 && !Arrays.equals(shapes.get(tensor), expectedShape)) {
            throw new ModelFormatException(source + ": tensor '" + tensor + "' has shape " + Arrays.toString(shapes.get(tensor))
                    + ", expected " + Arrays.toString(expectedShape));
        }
        return v;
    }
}
