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
 * One quantized linear layer of a store in the GPTQ checkpoint layout of AutoGPTQ / GPTQModel
 * ({@code checkpoint_format: "gptq"}, the "v1" zero-point convention), as its loaders and vLLM's gptq kernels
 * read it:
 * <ul>
 *   <li>{@code qweight} int32 {@code [in·bits/32, out]}: column {@code o} holds the levels {@code q[o, 0..in)}
 *       as one little-endian bit stream, level {@code i} in bits {@code [i·bits, (i+1)·bits)} of the stream
 *       counted from bit 0 of word 0 (so at 3 bits a level may straddle two words);</li>
 *   <li>{@code qzeros} int32 {@code [groups, out·bits/32]}: row {@code g} holds {@code zero[o, g] − 1} for
 *       {@code o = 0..out) as the same kind of stream (loaders add the 1 back);</li>
 *   <li>{@code scales} float16 {@code [groups, out]}; {@code g_idx} int32 {@code [in]}; {@code bias} float16
 *       when the layer has one.</li>
 * </ul>
 * So {@code W[o, i] = scales[g, o] · (q[o, i] − (qzeros[g, o] + 1))} with {@code g = g_idx[i]}: the store's
 * {@code W = scale · (level − zero)} with its float32 scales rounded to float16.
 *
 * <p>A zero point of 0 (an asymmetric group whose minimum is about 0) has no v1 encoding: it would be stored as
 * −1, which wraps to {@code 2^bits − 1} and reads back as {@code 2^bits}. For such stores the export writes
 * GPTQModel's {@code checkpoint_format: "gptq_v2"} instead, where {@code qzeros} holds the zero point itself
 * ({@code W = scales · (q − qzeros)}); GPTQModel and vLLM's {@code gptq} loader read it. Which one a store gets
 * is decided before any shard is written ({@link ZeroPointScan}), so every layer of a checkpoint uses one convention.
 */
public final class GptqTensors implements LayerLayout {
    private static final long serialVersionUID = 1L;

    private final boolean v2;

    /** The v1 layout ({@code v2} false) or gptq_v2. */
    GptqTensors(boolean v2) {
        this.v2 = v2;
    }

    @Override
    public String label() {
        return v2 ? "gptq_v2" : "gptq";
    }

    @Override
    public List<Header> headers(String layer, Map<String, StoreTensors.Info> kinds) {
        return layout(layer, kinds);
    }

    @Override
    public Converted convert(String layer, String module, Map<String, Map<String, TensorRecord>> block) {
        return Converted.exact(of(layer, LayerLayout.kinds(block, module), v2));
    }

    /** Whether every zero point of a {@code bits}-bit layer has a v1 encoding: an integer 1 .. 2^bits − 1. */
    static boolean fitsV1(float[] zeros, int bits) {
        for (float z : zeros) if (z != Math.rint(z) || z < 1 || z > (1 << bits) - 1) return false;
        return true;
    }

    /** Bit widths the GPTQ kernels and loaders take. */
    public static final List<Integer> BITS = List.of(2, 3, 4, 8);

    /**
     * The tensors {@link #of} makes for layer {@code name}, from the store's metadata alone (no weight is read):
     * what the export plans its shards with before any task runs. Refuses what {@link #of} refuses that the
     * metadata shows (everything but a zero point of 0).
     */
    public static List<Header> layout(String name, Map<String, StoreTensors.Info> kinds) {
        StoreTensors.Info qweight = require(name, kinds, TensorRecord.QWEIGHT);
        check(name, qweight.format(), qweight.dtype(), qweight.bits(), qweight.shape(), hasLorc(kinds));
        long bits = qweight.bits(), out = qweight.shape()[0], in = qweight.shape()[1];
        long groups = elements(require(name, kinds, BlockRecords.SCALES).shape()) / out;
        require(name, kinds, BlockRecords.ZEROS);
        require(name, kinds, BlockRecords.G_IDX);
        List<Header> headers = new ArrayList<>();
        headers.add(new Header(name + ".qweight", DType.I32, new long[] {in / 32 * bits, out}));
        headers.add(new Header(name + ".qzeros", DType.I32, new long[] {groups, out / 32 * bits}));
        headers.add(new Header(name + ".scales", DType.F16, new long[] {groups, out}));
        headers.add(new Header(name + ".g_idx", DType.I32, new long[] {in}));
        StoreTensors.Info bias = kinds.get("bias");
        if (bias != null) headers.add(new Header(name + ".bias", DType.F16, bias.shape()));
        return headers;
    }

    /**
     * The tensors of layer {@code name} ({@code model.layers.0.self_attn.q_proj}) from its store rows by kind,
     * with qzeros holding zero − 1 (v1) or the zero point itself ({@code v2}).
     */
    public static List<Tensor> of(String name, Map<String, TensorRecord> kinds, boolean v2) {
        TensorRecord qweight = require(name, kinds, TensorRecord.QWEIGHT);
        check(name, qweight.format(), qweight.dtype(), qweight.bits(), qweight.shape(), hasLorc(kinds));
        int bits = qweight.bits(), out = (int) qweight.shape()[0], in = (int) qweight.shape()[1];
        byte[] packed = qweight.packedLevels();
        float[] scales = require(name, kinds, BlockRecords.SCALES).toFloats();
        TensorRecord zerosRow = require(name, kinds, BlockRecords.ZEROS);
        int[] gIdx = require(name, kinds, BlockRecords.G_IDX).toInts();
        int groups = scales.length / out;
        float[] zeros = zerosRow.dtype().equals(TensorRecord.INT32) ? toFloats(zerosRow.toInts()) : zerosRow.toFloats();
        if (gIdx.length != in || scales.length != groups * out || zeros.length != scales.length) {
            throw new IllegalArgumentException(name + ": g_idx " + gIdx.length + ", scales " + scales.length + ", zeros "
                    + zeros.length + " do not fit a [" + out + ", " + in + "] weight");
        }
        int[] storedZeros = new int[groups * out];  // [groups, out], zero − 1 (v1) or zero (v2)
        float[] scalesT = new float[groups * out];  // [groups, out]
        int low = v2 ? 0 : 1;
        for (int o = 0; o < out; o++) {
            for (int g = 0; g < groups; g++) {
                float z = zeros[o * groups + g];
                if (z != Math.rint(z) || z < low || z > (1 << bits) - 1) {
                    throw new IllegalArgumentException(name + ": zero point " + z + " of row " + o + " group " + g
                            + " has no GPTQ " + (v2 ? "v2" : "v1") + " encoding (expected an integer " + low + ".."
                            + ((1 << bits) - 1) + (v2 ? ")" : "; v1 stores zero − 1 in " + bits + " bits: the export uses gptq_v2 for such stores)"));
                }
                storedZeros[g * out + o] = (int) z - low;
                scalesT[g * out + o] = scales[o * groups + g];
            }
        }
        List<Tensor> tensors = new ArrayList<>();
        tensors.add(new Tensor(name + ".qweight", DType.I32, new long[] {in / 32 * bits, out}, transposeWords(packed, out, in / 32 * bits)));
        tensors.add(Tensor.ints(name + ".qzeros", packRows(storedZeros, groups, out, bits), groups, out / 32 * bits));
        tensors.add(Tensor.floats(name + ".scales", DType.F16, scalesT, groups, out));
        tensors.add(Tensor.ints(name + ".g_idx", gIdx, in));
        TensorRecord bias = kinds.get("bias");
        if (bias != null) tensors.add(Tensor.floats(name + ".bias", DType.F16, bias.toFloats(), bias.shape()));
        return tensors;
    }

    /**
     * {@code values [rows, cols]} (a weight's levels {@code [out, in]}) packed along each row into the columns of
     * the result {@code [cols·bits/32, rows]}: word {@code [w, r]} holds bits {@code [32w, 32w + 32)} of row r's stream.
     */
    static int[] packColumns(int[] values, int rows, int cols, int bits) {
        int[] packed = new int[cols / 32 * bits * rows];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) put(packed, r, rows, (long) c * bits, values[r * cols + c], bits);
        }
        return packed;
    }

    /**
     * Little-endian int32 words {@code [rows, words]} transposed to {@code [words, rows]}, as bytes. A store's packed
     * levels {@code [out, in]} with {@code in·bits} a multiple of 32 are each row's stream in whole words, i.e.
     * {@link #packRows} of the levels; transposed they are {@link #packColumns} of the levels, without unpacking.
     */
    static byte[] transposeWords(byte[] packed, int rows, int words) {
        int[] src = new int[rows * words], dst = new int[rows * words];
        ByteBuffer.wrap(packed).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(src);
        final int tile = 64;  // tiles of 64×64 words: both sides stay in cache
        for (int r0 = 0; r0 < rows; r0 += tile) {
            int r1 = Math.min(rows, r0 + tile);
            for (int w0 = 0; w0 < words; w0 += tile) {
                int w1 = Math.min(words, w0 + tile);
                for (int r = r0; r < r1; r++) {
                    for (int w = w0; w < w1; w++) dst[w * rows + r] = src[r * words + w];
                }
            }
        }
        byte[] out = new byte[packed.length];
        ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().put(dst);
        return out;
    }

    /** {@code values [rows, cols]} packed along each row into the rows of the result {@code [rows, cols·bits/32]}. */
    static int[] packRows(int[] values, int rows, int cols, int bits) {
        int words = cols / 32 * bits;
        int[] packed = new int[rows * words];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) put(packed, r * words, 1, (long) c * bits, values[r * cols + c], bits);
        }
        return packed;
    }

    /** Ors {@code value} into bit {@code bit} of the stream whose word w is {@code packed[first + w·stride]}. */
    private static void put(int[] packed, int first, int stride, long bit, int value, int bits) {
        int w = (int) (bit >>> 5), shift = (int) (bit & 31);
        packed[first + w * stride] |= value << shift;
        if (shift + bits > 32) packed[first + (w + 1) * stride] |= value >>> (32 - shift);
    }

    private static float[] toFloats(int[] v) {
        float[] f = new float[v.length];
        for (int i = 0; i < v.length; i++) f[i] = v[i];
        return f;
    }

    /** What the GPTQ layout cannot hold, refused naming the layer: FP weights, LoRC factors, other widths, odd shapes. */
    private static void check(String name, String format, String dtype, int bits, long[] shape, boolean lorc) {
        if (!format.startsWith("int") || dtype.startsWith("fp")) {
            throw new IllegalArgumentException(name + ": the store holds " + format
                    + " weights; the GPTQ layout holds integer levels (use --format fp8 for FP8 weights)");
        }
        if (lorc) {
            throw new IllegalArgumentException(name + ": the store keeps LoRC factors beside the weight; the GPTQ layout has no place for them");
        }
        if (!BITS.contains(bits)) throw new IllegalArgumentException(name + ": " + bits + "-bit weights; the GPTQ layout has 2, 3, 4 or 8 bits");
        if (shape.length != 2 || shape[0] % 32 != 0 || shape[1] % 32 != 0) {
            throw new IllegalArgumentException(name + ": weight " + java.util.Arrays.toString(shape) + "; the GPTQ layout packs 32 levels "
                    + "per bits words along both dimensions, so both must be multiples of 32");
        }
    }

    static boolean hasLorc(Map<String, ?> kinds) {
        return kinds.containsKey(BlockRecords.LORC_U) || kinds.containsKey(BlockRecords.LORC_V);
    }

    static long elements(long[] shape) {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    static <T> T require(String name, Map<String, T> kinds, String kind) {
        T t = kinds.get(kind);
        if (t == null) throw new IllegalArgumentException(name + ": the store has no " + kind + " row for this layer");
        return t;
    }
}
