package io.blockquant.export;

import io.blockquant.model.DType;
import io.blockquant.model.SafetensorsWriter.Header;
import io.blockquant.model.SafetensorsWriter.Tensor;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.StoreTensors;
import io.blockquant.store.TensorRecord;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * One FP8 layer of a store in the compressed-tensors "float-quantized" layout (what llm-compressor's FP8
 * schemes save and vLLM's compressed-tensors loader reads): {@code weight} float8_e4m3fn {@code [out, in]},
 * the store's codes byte for byte (they are the OCP e4m3fn bit patterns), and {@code weight_scale} float32
 * {@code [out, 1]}, one scale per output channel: {@code W[o, i] = e4m3(weight[o, i]) · weight_scale[o]}, the
 * store's dequantization exactly.
 *
 * <p>Only per-channel E4M3 layers are exported. INT or FP4 weights are refused rather than re-quantized to
 * FP8: re-quantizing would ship a model that is neither the calibrated one nor an FP8-calibrated one, and
 * nobody could tell from the checkpoint. Quantize with {@code --wformat fp8 --wbits 8 --group 0} instead.
 */
public final class Fp8Tensors implements LayerLayout {
    private static final long serialVersionUID = 1L;

    @Override
    public String label() {
        return "float-quantized";
    }

    @Override
    public List<Header> headers(String layer, Map<String, StoreTensors.Info> kinds) {
        return layout(layer, kinds);
    }

    @Override
    public Converted convert(String layer, String module, Map<String, Map<String, TensorRecord>> block) {
        return Converted.exact(of(layer, LayerLayout.kinds(block, module)));
    }

    /**
     * The tensors {@link #of} makes for layer {@code name}, from the store's metadata alone (no weight is read):
     * what the export plans its shards with. Refuses what {@link #of} refuses.
     */
    public static List<Header> layout(String name, Map<String, StoreTensors.Info> kinds) {
        StoreTensors.Info qweight = GptqTensors.require(name, kinds, TensorRecord.QWEIGHT);
        check(name, qweight.dtype(), qweight.format(), GptqTensors.hasLorc(kinds));
        long out = qweight.shape()[0], in = qweight.shape()[1];
        checkPerChannel(name, GptqTensors.elements(GptqTensors.require(name, kinds, BlockRecords.SCALES).shape()), out, qweight.groupSize());
        List<Header> headers = new ArrayList<>();
        headers.add(new Header(name + ".weight", DType.F8_E4M3, new long[] {out, in}));
        headers.add(new Header(name + ".weight_scale", DType.F32, new long[] {out, 1}));
        LayerLayout.addBiasHeader(headers, name, kinds);
        return headers;
    }

    public static List<Tensor> of(String name, Map<String, TensorRecord> kinds) {
        TensorRecord qweight = GptqTensors.require(name, kinds, TensorRecord.QWEIGHT);
        check(name, qweight.dtype(), qweight.format(), GptqTensors.hasLorc(kinds));
        int out = (int) qweight.shape()[0], in = (int) qweight.shape()[1];
        float[] scales = GptqTensors.require(name, kinds, BlockRecords.SCALES).toFloats();
        checkPerChannel(name, scales.length, out, qweight.groupSize());
        List<Tensor> tensors = new ArrayList<>();
        tensors.add(new Tensor(name + ".weight", DType.F8_E4M3, new long[] {out, in}, qweight.data()));
        tensors.add(Tensor.floats(name + ".weight_scale", scales, out, 1));
        LayerLayout.addBias(tensors, name, kinds);
        return tensors;
    }

    private static void check(String name, String dtype, String format, boolean lorc) {
        if (!dtype.equals("fp8-e4m3")) {
            throw new IllegalArgumentException(name + ": the store holds " + dtype + " (" + format
                    + ") weights; --format fp8 exports FP8 E4M3 weights as quantized (quantize with --wformat fp8 "
                    + "--wbits 8 --group 0), it does not re-quantize other formats (use --format gptq for INT weights)");
        }
        if (lorc) {
            throw new IllegalArgumentException(name + ": the store keeps LoRC factors beside the weight; the FP8 layout has no place for them");
        }
    }

    private static void checkPerChannel(String name, long scales, long out, int groupSize) {
        if (scales != out) {
            throw new IllegalArgumentException(name + ": " + scales / out + " scale groups per channel (group size "
                    + groupSize + "); the float-quantized layout here is per channel (quantize with --group 0)");
        }
    }
}
