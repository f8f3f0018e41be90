package io.blockquant.store;

import io.blockquant.model.ModelFormatException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Objects;
import java.util.zip.CRC32C;

/**
 * One tensor of a model store, as it is written to and read from Parquet.
 *
 * @param block     transformer block, or {@value #MODEL_BLOCK} for tensors outside the blocks (embeddings,
 *                  final norm, head)
 * @param module    module inside the block ({@code self_attn.q_proj}, {@code input_layernorm}); for block -1
 *                  the checkpoint name ({@code model.embed_tokens.weight})
 * @param kind      {@code qweight} (packed integer levels), {@code scales}, {@code zeros}, {@code g_idx},
 *                  {@code bias} or {@code weight} (full-precision floats)
 * @param dtype     {@code float32}, {@code int32} or {@code uint<bits>-packed}
 * @param shape     logical shape ({@code [out, in]} for a qweight)
 * @param bits      bits per level, 0 when not quantized
 * @param groupSize quantization group size, 0 = per channel
 * @param format    number format ({@code int-asym}, {@code int-sym}, {@code fp32}, {@code int32}, ...)
 * @param data      the bytes: little-endian float32 / int32, or {@link BitPacking} levels. Not copied: a record
 *                  shares its array with whoever made it
 * @param checksum  CRC32C of {@code data}, 8 lowercase hex digits
 */
public record TensorRecord(int block, String module, String kind, String dtype, long[] shape, int bits,
                           int groupSize, String format, byte[] data, String checksum) implements Serializable {

    public static final int MODEL_BLOCK = -1;
    public static final String FLOAT32 = "float32";
    public static final String INT32 = "int32";
    public static final String QWEIGHT = "qweight";

    public TensorRecord {
        Objects.requireNonNull(module, "module");
        Objects.requireNonNull(kind, "kind");
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(format, "format");
        Objects.requireNonNull(data, "data");
        Objects.requireNonNull(checksum, "checksum");
        if (block < MODEL_BLOCK) throw bad(block, module, kind, "block " + block + " (expected -1 or >= 0)");
        // names may become file names (export, views): none may lead outside the store
        checkName(block, module, kind, "module", module);
        checkName(block, module, kind, "kind", kind);
        if (bits < 0 || bits > 8) throw bad(block, module, kind, "bits " + bits + " (expected 0..8)");
        if (groupSize < 0) throw bad(block, module, kind, "group size " + groupSize + " (expected >= 0)");
        for (long d : shape) {
            if (d < 0) throw bad(block, module, kind, "shape " + Arrays.toString(shape) + " has a negative dimension");
        }
    }

    /** Full-precision float32 tensor (kind {@code weight}, {@code scales}, {@code bias}, ...). */
    public static TensorRecord floats(int block, String module, String kind, float[] values, long... shape) {
        checkCount(block, module, kind, values.length, shape);
        ByteBuffer buf = ByteBuffer.allocate(Math.multiplyExact(values.length, 4)).order(ByteOrder.LITTLE_ENDIAN);
        buf.asFloatBuffer().put(values);
        byte[] data = buf.array();
        return new TensorRecord(block, module, kind, FLOAT32, shape.clone(), 0, 0, "fp32", data, crc32c(data));
    }

    /** int32 tensor (kind {@code g_idx}, unpacked {@code zeros}, ...). */
    public static TensorRecord ints(int block, String module, String kind, int[] values, long... shape) {
        checkCount(block, module, kind, values.length, shape);
        ByteBuffer buf = ByteBuffer.allocate(Math.multiplyExact(values.length, 4)).order(ByteOrder.LITTLE_ENDIAN);
        buf.asIntBuffer().put(values);
        byte[] data = buf.array();
        return new TensorRecord(block, module, kind, INT32, shape.clone(), 0, 0, INT32, data, crc32c(data));
    }

    /** Packed quantized weight: kind {@code qweight}, levels 0..2^bits-1 in row-major order of {@code shape}. */
    public static TensorRecord packed(int block, String module, int[] levels, int bits, int groupSize,
                                      String format, long... shape) {
        return packed(block, module, QWEIGHT, levels, bits, groupSize, format, shape);
    }

    /** Packed levels of any kind (e.g. packed {@code zeros}). */
    public static TensorRecord packed(int block, String module, String kind, int[] levels, int bits, int groupSize,
                                      String format, long... shape) {
        checkCount(block, module, kind, levels.length, shape);
        byte[] data;
        try {
            data = BitPacking.pack(levels, bits);
        } catch (IllegalArgumentException e) {
            throw bad(block, module, kind, e.getMessage());
        }
        return new TensorRecord(block, module, kind, packedDtype(bits), shape.clone(), bits, groupSize, format,
                data, crc32c(data));
    }

    public static String packedDtype(int bits) {
        return "uint" + bits + "-packed";
    }

    /** Number of logical elements: the product of the shape (1 for a scalar). */
    public long elements() {
        long n = 1;
        for (long d : shape) n = Math.multiplyExact(n, d);
        return n;
    }

    public float[] toFloats() {
        requireDtype(FLOAT32);
        int n = elementCount();
        requireBytes((long) n * 4);
        float[] out = new float[n];
        ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
        return out;
    }

    public int[] toInts() {
        requireDtype(INT32);
        int n = elementCount();
        requireBytes((long) n * 4);
        int[] out = new int[n];
        ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(out);
        return out;
    }

    /** The unpacked levels of a {@code uint<bits>-packed} tensor. */
    public int[] levels() {
        if (bits < 1 || !dtype.equals(packedDtype(bits))) {
            throw new IllegalStateException(describe() + ": dtype " + dtype + " with bits " + bits
                    + " is not packed levels (expected " + (bits < 1 ? "uint<bits>-packed, bits 1..8" : packedDtype(bits)) + ")");
        }
        int n = elementCount();
        try {
            return BitPacking.unpack(data, bits, n);
        } catch (IllegalArgumentException e) {
            throw new ModelFormatException(describe() + ": " + e.getMessage(), e);
        }
    }

    /** Recomputes the CRC32C of {@code data}; throws when it is not {@link #checksum()}. */
    public void verify() {
        String actual = crc32c(data);
        if (!actual.equals(checksum)) {
            throw new ModelFormatException(describe() + ": checksum mismatch (stored " + checksum + ", data has "
                    + actual + ", " + data.length + " bytes): the tensor data is corrupt");
        }
    }

    /** {@code block 3 module self_attn.q_proj kind qweight}: how errors name a tensor. */
    public String describe() {
        return "block " + block + " module " + module + " kind " + kind;
    }

    public static String crc32c(byte[] data) {
        CRC32C crc = new CRC32C();
        crc.update(data, 0, data.length);
        return String.format("%08x", crc.getValue());
    }

    @Override
    public boolean equals(Object o) {
        if (this == o) return true;
        if (!(o instanceof TensorRecord r)) return false;
        return block == r.block && bits == r.bits && groupSize == r.groupSize && module.equals(r.module)
                && kind.equals(r.kind) && dtype.equals(r.dtype) && format.equals(r.format)
                && checksum.equals(r.checksum) && Arrays.equals(shape, r.shape) && Arrays.equals(data, r.data);
    }

    @Override
    public int hashCode() {
        // data is left to the checksum: hashing megabytes of weights buys nothing
        return Objects.hash(block, module, kind, dtype, Arrays.hashCode(shape), bits, groupSize, format,
                data.length, checksum);
    }

    @Override
    public String toString() {
        return "TensorRecord[block=" + block + ", module=" + module + ", kind=" + kind + ", dtype=" + dtype
                + ", shape=" + Arrays.toString(shape) + ", bits=" + bits + ", groupSize=" + groupSize
                + ", format=" + format + ", bytes=" + data.length + ", checksum=" + checksum + "]";
    }

    private int elementCount() {
        long n = elements();
        if (n > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException(describe() + ": " + n + " elements do not fit one Java array");
        }
        return (int) n;
    }

    private void requireDtype(String expected) {
        if (!dtype.equals(expected)) {
            throw new IllegalStateException(describe() + ": dtype is " + dtype + ", expected " + expected);
        }
    }

    private void requireBytes(long expected) {
        if (data.length != expected) {
            throw new ModelFormatException(describe() + ": " + data.length + " bytes of data, expected " + expected
                    + " for shape " + Arrays.toString(shape) + " of " + dtype);
        }
    }

    private static void checkCount(int block, String module, String kind, int count, long[] shape) {
        long n = 1;
        for (long d : shape) {
            if (d < 0) throw bad(block, module, kind, "shape " + Arrays.toString(shape) + " has a negative dimension");
            n = Math.multiplyExact(n, d);
        }
        if (n != count) {
            throw bad(block, module, kind, count + " values for shape " + Arrays.toString(shape) + " (expected " + n + ")");
        }
    }

    private static void checkName(int block, String module, String kind, String field, String value) {
        String problem = io.blockquant.model.PathSegment.problem(value);
        if (problem != null) {
            throw bad(block, module, kind, field + " name '" + value + "' " + problem + " (expected a plain tensor name)");
        }
    }

    private static IllegalArgumentException bad(int block, String module, String kind, String what) {
        return new IllegalArgumentException("block " + block + " module " + module + " kind " + kind + ": " + what);
    }
}
