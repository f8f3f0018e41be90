package io.blockquant.store;

import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import java.util.HashMap;
import java.util.Map;

/**
 * A finished store's model as float32 tensors under their checkpoint names (quantized weights
 * dequantized), so {@link ModelLoader} builds the quantized model exactly as it builds one from a checkpoint.
 * The whole model in one JVM: for tests of small stores only; jobs read a store block by block
 * ({@code eval.StoreSource}).
 */
public final class StoredModel {

    private StoredModel() {}

    public static InMemoryWeights read(StoreReader store, ModelSpec spec) {
        Map<String, float[]> values = new HashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        for (TensorRecord t : store.modelTensors()) {
            values.put(t.module(), t.toFloats());
            shapes.put(t.module(), t.shape());
        }
        InMemoryWeights weights = new InMemoryWeights(store.root().toString(), values, shapes);
        ModelLoader names = ModelLoader.forNames(weights, spec);
        for (int block : store.blocks()) BlockRecords.dequantize(store.tensors(block), names.blockPrefix(block), values, shapes);
        return weights;
    }
}
