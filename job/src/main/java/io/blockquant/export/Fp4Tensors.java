package io.blockquant.export;

import io.blockquant.model.DType;
import io.blockquant.model.SafetensorsWriter.Header;
import io.blockquant.model.SafetensorsWriter.Tensor;
import io.blockquant.quant.FpFormat;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.StoreTensors;
import io.blockquant.store.TensorRecord;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * One FP4 (E2M1) layer of a store in a compressed-tensors FP4 layout, as llm-compressor saves it and vLLM reads
 * it. Both keep {@code weight_packed} uint8 {@code [out, in/2]}: the E2M1 codes (sign in bit 3, then exponent
 * and mantissa: index 0..7 of ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}), two per byte, the even column in the low nibble —
 * the store's packed codes byte for byte. They differ in the scales:
 * <ul>
 *   <li>{@code mxfp4-pack-quantized} (OCP MXFP4, for stores whose scales are powers of two: ZeroQuant-FP's M1):
 *       {@code weight_scale} uint8 {@code [out, in/32]}, an E8M0 exponent per 32 columns,
 *       {@code W = e2m1 · 2^(weight_scale − 127)}. Exact.</li>
 *   <li>{@code nvfp4-pack-quantized}: {@code weight_scale} float8_e4m3fn {@code [out, in/16]} per 16 columns and
 *       {@code weight_global_scale} float32 {@code [1]}, {@code W = e2m1 · weight_scale / weight_global_scale}.
 *       The store's float32 scales are re-expressed: the global scale is a power of two chosen per block so that
 *       the block's largest scale lands in {@code [224, 448]} of E4M3's range (one global scale per block is
 *       shared by q/k/v and by gate/up, as vLLM's fused layers need), and each scale is rounded to E4M3. That
 *       rounding (relative error up to 2^−4 per scale, none for power-of-two scales in range) is the error the
 *       export measures and reports.</li>
 * </ul>
 * A store group of G columns becomes G/16 (G/32) repeated scales; act-order stores (columns of one 16-block in
 * different groups) are refused.
 */
final class Fp4Tensors implements LayerLayout {
    private static final long serialVersionUID = 1L;

    /** E4M3's largest finite value. */
    static final float E4M3_MAX = 448f;

    private final boolean mx;

    /** MXFP4 ({@code mx}) or NVFP4. */
    Fp4Tensors(boolean mx) {
        this.mx = mx;
    }

    private int block() {
        return mx ? 32 : 16;
    }

    @Override
    public String label() {
        return mx ? "mxfp4-pack-quantized" : "nvfp4-pack-quantized";
    }

    @Override
    public List<Header> headers(String layer, Map<String, StoreTensors.Info> kinds) {
        StoreTensors.Info qweight = GptqTensors.require(layer, kinds, TensorRecord.QWEIGHT);
        check(layer, qweight.dtype(), qweight.groupSize(), qweight.shape(), GptqTensors.hasLorc(kinds));
        GptqTensors.require(layer, kinds, BlockRecords.SCALES);
        GptqTensors.require(layer, kinds, BlockRecords.G_IDX);
        long out = qweight.shape()[0], in = qweight.shape()[1];
        List<Header> h = new ArrayList<>();
        h.add(new Header(layer + ".weight_packed", DType.U8, new long[] {out, in / 2}));
        h.add(new Header(layer + ".weight_scale", mx ? DType.U8 : DType.F8_E4M3, new long[] {out, in / block()}));
        if (!mx) h.add(new Header(layer + ".weight_global_scale", DType.F32, new long[] {1}));
        LayerLayout.addBiasHeader(h, layer, kinds);
        return h;
    }

    @Override
    public Converted convert(String layer, String module, Map<String, Map<String, TensorRecord>> block) {
        Map<String, TensorRecord> kinds = LayerLayout.kinds(block, module);
        TensorRecord qweight = GptqTensors.require(layer, kinds, TensorRecord.QWEIGHT);
        check(layer, qweight.dtype(), qweight.groupSize(), qweight.shape(), GptqTensors.hasLorc(kinds));
        int out = (int) qweight.shape()[0], in = (int) qweight.shape()[1], n = block(), blocks = in / n;
        float[] scales = GptqTensors.require(layer, kinds, BlockRecords.SCALES).toFloats();
        int[] gIdx = GptqTensors.require(layer, kinds, BlockRecords.G_IDX).toInts();
        int groups = scales.length / out;
        if (qweight.data().length != out * in / 2 || gIdx.length != in || groups * out != scales.length) {
            throw new IllegalArgumentException(layer + ": codes " + qweight.data().length + " bytes, g_idx " + gIdx.length + ", scales "
                    + scales.length + " do not fit a [" + out + ", " + in + "] FP4 weight");
        }
        for (int b = 0; b < blocks; b++) {
            for (int c = b * n; c < (b + 1) * n; c++) {
                if (gIdx[c] != gIdx[b * n]) {
                    throw new IllegalArgumentException(layer + ": columns " + (b * n) + ".." + ((b + 1) * n - 1) + " span store groups "
                            + gIdx[b * n] + " and " + gIdx[c] + " (act-order); " + label() + " has one scale per " + n + " consecutive columns");
                }
            }
        }
        byte[] codes = qweight.data();
        List<Tensor> t = new ArrayList<>();
        t.add(new Tensor(layer + ".weight_packed", DType.U8, new long[] {out, in / 2}, codes));
        double errorSq = 0, weightSq = 0;
        byte[] scaleCodes = new byte[out * blocks];
        if (mx) {
            for (int o = 0; o < out; o++) {
                for (int b = 0; b < blocks; b++) {
                    float s = scales[o * groups + gIdx[b * n]];
                    int e = Math.getExponent(s);
                    if (!(s > 0) || s != Math.scalb(1f, e) || e < -127 || e > 127) {
                        throw new IllegalArgumentException(layer + ": scale " + s + " of row " + o + " is not a power of two in 2^-127..2^127; "
                                + "MXFP4's E8M0 scales need them (quantize with --scale-constraint m1, or export as NVFP4)");
                    }
                    scaleCodes[o * blocks + b] = (byte) (e + 127);
                }
            }
            t.add(new Tensor(layer + ".weight_scale", DType.U8, new long[] {out, blocks}, scaleCodes));
        } else {
            float global = globalScale(block);
            for (int o = 0; o < out; o++) {
                for (int b = 0; b < blocks; b++) {
                    float s = scales[o * groups + gIdx[b * n]];
                    int code = FpFormat.E4M3.encode(s * global);
                    scaleCodes[o * blocks + b] = (byte) code;
                    float exported = FpFormat.E4M3.decode(code) / global;
                    for (int c = b * n; c < (b + 1) * n; c++) {
                        float e2m1 = FpFormat.E2M1.decode(codes[(o * in + c) >> 1] >>> ((c & 1) * 4) & 0xf);
                        double w = (double) e2m1 * s, d = w - (double) e2m1 * exported;
                        errorSq += d * d;
                        weightSq += w * w;
                    }
                }
            }
            t.add(new Tensor(layer + ".weight_scale", DType.F8_E4M3, new long[] {out, blocks}, scaleCodes));
            t.add(Tensor.floats(layer + ".weight_global_scale", new float[] {global}, 1));
        }
        LayerLayout.addBias(t, layer, kinds);
        return new Converted(t, errorSq, weightSq);
    }

    /**
     * The block's NVFP4 global scale: the power of two {@code 2^k} that puts the largest scale of every FP4 layer
     * of the block into {@code [224, 448]} once multiplied (a power of two, so dividing by it is exact).
     */
    static float globalScale(Map<String, Map<String, TensorRecord>> block) {
        float max = 0f;
        for (Map<String, TensorRecord> kinds : block.values()) {
            TensorRecord q = kinds.get(TensorRecord.QWEIGHT), s = kinds.get(BlockRecords.SCALES);
            if (q == null || s == null || !q.dtype().startsWith("fp4")) continue;
            for (float v : s.toFloats()) max = Math.max(max, Math.abs(v));
        }
        if (!(max > 0f) || Float.isInfinite(max)) return 1f;
        int k = Math.getExponent(E4M3_MAX / max);
        return Math.scalb(1f, Math.max(-126, Math.min(127, k)));
    }

    private void check(String layer, String dtype, int groupSize, long[] shape, boolean lorc) {
        if (!dtype.startsWith("fp4")) {
            throw new IllegalArgumentException(layer + ": the store holds " + dtype + " weights; " + label() + " holds FP4 E2M1 codes");
        }
        if (lorc) throw new IllegalArgumentException(layer + ": the store keeps LoRC factors beside the weight; " + label() + " has no place for them");
        int n = block();
        if (shape.length != 2 || shape[1] % n != 0 || (groupSize > 0 && groupSize % n != 0)) {
            throw new IllegalArgumentException(layer + ": weight " + java.util.Arrays.toString(shape) + ", group " + groupSize + "; "
                    + label() + " has one scale per " + n + " columns, so the input width and the group must be multiples of " + n);
        }
    }
}
