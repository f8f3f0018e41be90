package io.blockquant.export;

import io.blockquant.model.DType;
import io.blockquant.model.SafetensorsWriter.Header;
import io.blockquant.model.SafetensorsWriter.Tensor;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.StoreTensors;
import io.blockquant.store.TensorRecord;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * One INT layer of a store in a compressed-tensors integer layout, as llm-compressor saves it and vLLM's
 * compressed-tensors loader reads it. compressed-tensors keeps signed levels {@code q ∈ [−2^(b−1), 2^(b−1))} and
 * zero points, {@code W = scale · (q − zp)}; the store keeps unsigned levels {@code L = q + 2^(b−1)} and zero
 * points {@code Z = zp + 2^(b−1)}, {@code W = scale · (L − Z)}: the same weight.
 * <ul>
 *   <li>{@code pack-quantized} (W4A16 / W8A16, any width 2..8): {@code weight_packed} int32
 *       {@code [out, in·b/32]}, each row's {@code L} as one little-endian bit stream (compressed-tensors'
 *       {@code pack_to_int32} stores {@code q + 2^(b−1)}, i.e. L); {@code weight_shape} int64 {@code [out, in]};
 *       {@code weight_scale} float16 {@code [out, groups]}; asymmetric stores add {@code weight_zero_point} int32
 *       {@code [out·b/32, groups]}, each column's {@code Z} packed the same way along the output dimension;
 *       act-order stores add {@code weight_g_idx} int32 {@code [in]} ({@code actorder: "group"}).</li>
 *   <li>{@code int-quantized} (W8A8 with dynamic per-token INT8 activations): {@code weight} int8
 *       {@code [out, in]} holding {@code q = L − 128}, {@code weight_scale} float32 {@code [out, 1]};
 *       symmetric per-channel stores only (vLLM's W8A8 INT kernels take symmetric weights).</li>
 * </ul>
 */
final class PackedIntTensors implements LayerLayout {
    private static final long serialVersionUID = 1L;

    private final boolean w8a8;
    private final boolean actOrder;

    /** {@code pack-quantized} ({@code w8a8} false, with {@code weight_g_idx} when {@code actOrder}) or {@code int-quantized}. */
    PackedIntTensors(boolean w8a8, boolean actOrder) {
        this.w8a8 = w8a8;
        this.actOrder = actOrder;
    }

    @Override
    public String label() {
        return w8a8 ? "int-quantized" : "pack-quantized";
    }

    @Override
    public List<Header> headers(String layer, Map<String, StoreTensors.Info> kinds) {
        StoreTensors.Info qweight = GptqTensors.require(layer, kinds, TensorRecord.QWEIGHT);
        boolean sym = qweight.format().equals("int-sym");
        check(layer, qweight.format(), qweight.dtype(), qweight.bits(), qweight.shape(), GptqTensors.hasLorc(kinds), sym);
        long bits = qweight.bits(), out = qweight.shape()[0], in = qweight.shape()[1];
        long groups = GptqTensors.elements(GptqTensors.require(layer, kinds, BlockRecords.SCALES).shape()) / out;
        GptqTensors.require(layer, kinds, BlockRecords.ZEROS);
        GptqTensors.require(layer, kinds, BlockRecords.G_IDX);
        List<Header> h = new ArrayList<>();
        if (w8a8) {
            if (groups != 1) {
                throw new IllegalArgumentException(layer + ": " + groups + " scale groups per channel; the int-quantized W8A8 "
                        + "layout vLLM serves is per channel (quantize with --group 0)");
            }
            h.add(new Header(layer + ".weight", DType.I8, new long[] {out, in}));
            h.add(new Header(layer + ".weight_scale", DType.F32, new long[] {out, 1}));
        } else {
            h.add(new Header(layer + ".weight_packed", DType.I32, new long[] {out, in * bits / 32}));
            h.add(new Header(layer + ".weight_shape", DType.I64, new long[] {2}));
            h.add(new Header(layer + ".weight_scale", DType.F16, new long[] {out, groups}));
            if (!sym) h.add(new Header(layer + ".weight_zero_point", DType.I32, new long[] {out * bits / 32, groups}));
            if (actOrder) h.add(new Header(layer + ".weight_g_idx", DType.I32, new long[] {in}));
        }
        LayerLayout.addBiasHeader(h, layer, kinds);
        return h;
    }

    @Override
    public Converted convert(String layer, String module, Map<String, Map<String, TensorRecord>> block) {
        Map<String, TensorRecord> kinds = LayerLayout.kinds(block, module);
        TensorRecord qweight = GptqTensors.require(layer, kinds, TensorRecord.QWEIGHT);
        boolean sym = qweight.format().equals("int-sym");
        check(layer, qweight.format(), qweight.dtype(), qweight.bits(), qweight.shape(), GptqTensors.hasLorc(kinds), sym);
        int bits = qweight.bits(), out = (int) qweight.shape()[0], in = (int) qweight.shape()[1];
        byte[] packed = qweight.packedLevels();  // each row's levels in whole 32-bit words: weight_packed as it is
        float[] scales = GptqTensors.require(layer, kinds, BlockRecords.SCALES).toFloats();
        TensorRecord zerosRow = GptqTensors.require(layer, kinds, BlockRecords.ZEROS);
        float[] zeros = zerosRow.dtype().equals(TensorRecord.INT32) ? toFloats(zerosRow.toInts()) : zerosRow.toFloats();
        int[] gIdx = GptqTensors.require(layer, kinds, BlockRecords.G_IDX).toInts();
        int groups = scales.length / out;
        if (gIdx.length != in || scales.length != groups * out || zeros.length != scales.length) {
            throw new IllegalArgumentException(layer + ": g_idx " + gIdx.length + ", scales " + scales.length + ", zeros "
                    + zeros.length + " do not fit a [" + out + ", " + in + "] weight");
        }
        int half = 1 << (bits - 1);
        int[] zeroLevels = new int[groups * out];  // [groups, out]: each group's zero points along the output dimension
        for (int o = 0; o < out; o++) {
            for (int g = 0; g < groups; g++) {
                float z = zeros[o * groups + g];
                if (z != Math.rint(z) || z < 0 || z > (1 << bits) - 1 || (sym && z != half)) {
                    throw new IllegalArgumentException(layer + ": zero point " + z + " of row " + o + " group " + g
                            + " is not an integer level 0.." + ((1 << bits) - 1) + (sym ? " equal to " + half + " (symmetric)" : ""));
                }
                zeroLevels[g * out + o] = (int) z;
            }
        }
        if (!actOrder) {
            for (int i = 0; i < in; i++) {
                if (gIdx[i] != (groups == 1 ? 0 : i / (in / groups))) {
                    throw new IllegalArgumentException(layer + ": column " + i + " is in group " + gIdx[i] + ", not in order; "
                            + "the store's recipe.json says act_order false");
                }
            }
        }
        List<Tensor> t = new ArrayList<>();
        if (w8a8) {
            byte[] q = new byte[out * in];
            for (int k = 0; k < q.length; k++) q[k] = (byte) (packed[k] ^ 0x80);  // 8-bit levels one a byte: L − 128
            t.add(new Tensor(layer + ".weight", DType.I8, new long[] {out, in}, q));
            t.add(Tensor.floats(layer + ".weight_scale", scales, out, 1));
        } else {
            t.add(new Tensor(layer + ".weight_packed", DType.I32, new long[] {out, in / 32 * bits}, packed));
            t.add(new Tensor(layer + ".weight_shape", DType.I64, new long[] {2}, longs(out, in)));
            t.add(Tensor.floats(layer + ".weight_scale", DType.F16, scales, out, groups));
            if (!sym) t.add(Tensor.ints(layer + ".weight_zero_point", GptqTensors.packColumns(zeroLevels, groups, out, bits), out / 32 * bits, groups));
            if (actOrder) t.add(Tensor.ints(layer + ".weight_g_idx", gIdx, in));
        }
        LayerLayout.addBias(t, layer, kinds);
        return Converted.exact(t);
    }

    private void check(String layer, String format, String dtype, int bits, long[] shape, boolean lorc, boolean sym) {
        if (!format.startsWith("int") || dtype.startsWith("fp")) {
            throw new IllegalArgumentException(layer + ": the store holds " + format + " weights; " + label() + " holds integer levels");
        }
        if (lorc) throw new IllegalArgumentException(layer + ": the store keeps LoRC factors beside the weight; " + label() + " has no place for them");
        if (bits < 2 || bits > 8 || (w8a8 && bits != 8)) {
            throw new IllegalArgumentException(layer + ": " + bits + "-bit weights; " + label() + (w8a8 ? " holds 8-bit weights" : " holds 2..8 bits"));
        }
        if (w8a8 && !sym) {
            throw new IllegalArgumentException(layer + ": asymmetric weights; vLLM's int-quantized W8A8 kernels take symmetric weights "
                    + "(quantize with --sym)");
        }
        if (shape.length != 2 || shape[0] % 32 != 0 || shape[1] % 32 != 0) {
            throw new IllegalArgumentException(layer + ": weight " + java.util.Arrays.toString(shape) + "; " + label()
                    + " packs 32 levels per bits words, so both dimensions must be multiples of 32");
        }
    }

    private static byte[] longs(long... v) {
        ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (long x : v) b.putLong(x);
        return b.array();
    }

    private static float[] toFloats(int[] v) {
        float[] f = new float[v.length];
        for (int i = 0; i < v.length; i++) f[i] = v[i];
        return f;
    }
}
