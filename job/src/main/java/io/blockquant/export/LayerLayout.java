package io.blockquant.export;

import io.blockquant.model.SafetensorsWriter.Header;
import io.blockquant.model.SafetensorsWriter.Tensor;
import io.blockquant.store.StoreTensors;
import io.blockquant.store.TensorRecord;
import java.io.Serializable;
import java.util.List;
import java.util.Map;

/**
 * How one quantized linear of a store becomes the tensors of a checkpoint layout: its header entries from the
 * store's metadata alone (the driver plans shards with them before any task runs), and its tensors from the
 * block's rows (on an executor). One implementation per published layout.
 */
interface LayerLayout extends Serializable {

    /** The layout's name as the export summary prints it ({@code gptq}, {@code nvfp4-pack-quantized}, …). */
    String label();

    /** The tensors of {@code layer} (checkpoint name), from its store metadata by kind; refuses what the layout cannot hold. */
    List<Header> headers(String layer, Map<String, StoreTensors.Info> kinds);

    /**
     * The tensors of {@code layer} made from store module {@code module} of {@code block} (every module of the
     * block by kind: a layout whose scales are shared across layers reads its neighbours).
     */
    Converted convert(String layer, String module, Map<String, Map<String, TensorRecord>> block);

    /**
     * A converted layer, and what re-expressing it cost: {@code errorSq = Σ(W_store − W_exported)²} and
     * {@code weightSq = ΣW_store²} where the layout cannot hold the store's scales exactly (both 0 where it can).
     */
    record Converted(List<Tensor> tensors, double errorSq, double weightSq) {
        static Converted exact(List<Tensor> tensors) {
            return new Converted(tensors, 0, 0);
        }
    }

    /** The kinds of {@code module} in {@code block}, or an error naming the store module. */
    /** The layer's bias header, float32 as every layout stores it, when the layer has one. */
    static void addBiasHeader(List<Header> headers, String layer, Map<String, StoreTensors.Info> kinds) {
        StoreTensors.Info bias = kinds.get("bias");
        if (bias != null) headers.add(new Header(layer + ".bias", io.blockquant.model.DType.F32, bias.shape()));
    }

    /** The layer's bias tensor, float32, when the layer has one. */
    static void addBias(List<Tensor> tensors, String layer, Map<String, TensorRecord> kinds) {
        TensorRecord bias = kinds.get("bias");
        if (bias != null) tensors.add(Tensor.floats(layer + ".bias", bias.toFloats(), bias.shape()));
    }

    static Map<String, TensorRecord> kinds(Map<String, Map<String, TensorRecord>> block, String module) {
        Map<String, TensorRecord> kinds = block.get(module);
        if (kinds == null) throw new IllegalStateException("the block has no module " + module);
        return kinds;
    }
}
