package io.blockquant.store;

import io.blockquant.model.DType;
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
 * @param dtype     {@code float32}, {@code int32}, {@code uint<bits>-packed}, or (block -1, kept in the
 *                  checkpoint's dtype) {@code bfloat16} / {@code float16}
 * @param shape     logical shape ({@code [out, in]} for a qweight)
 * @param bits      bits per level, 0 when not quantized
 * @param groupSize quantization group size, 0 = per channel
 * @param format    number format ({@code int-asym}, {@code int-sym}, {@code fp32}, {@code int32}, ...)
 * @param data      the bytes: little-endian float32 / int32, or {@link BitPacking} levels. Not copied: a record
 *                  shares its array with whoever made it
 * @param checksum  CRC32C of {@code data}, 8 lowercase hex digits
 * @param part      a tensor too large for one Parquet value (an embedding or head of a real model) is split
 *                  along its first dimension into rows of at most {@link #PART_BYTES}: part k holds the k-th
 *                  slice, every slice but the last of the same number of rows; {@code shape} is the whole
 *                  tensor's. 0 for a tensor stored whole
 */
public record TensorRecord(int block, String module, String kind, String dtype, long[] shape, int bits,
                           int groupSize, String format, byte[] data, String checksum, int part) implements Serializable {

    public static final int MODEL_BLOCK = -1;
    public static final String FLOAT32 = "float32";
    public static final String INT32 = "int32";
    public static final String QWEIGHT = "qweight";
    public static final String BFLOAT16 = "bfloat16";
    public static final String FLOAT16 = "float16";
    /**
     * The most bytes of one stored value: Spark's RPC frames and Parquet pages stay bounded (a Llama-3-8B
     * embedding is 1 GB in bf16, a 405B one 4 GB, past a Java array). 16 MiB: a Parquet writer
     * buffers a value several times over (64 MiB values ran a 1.4 GB heap out of memory with two write tasks).
     */
    public static final long PART_BYTES = 16L << 20;

    /** A tensor stored whole (part 0). */
    public TensorRecord(int block, String module, String kind, String dtype, long[] shape, int bits,
                        int groupSize, String format, byte[] data, String checksum) {
        this(block, module, kind, dtype, shape, bits, groupSize, format, data, checksum, 0);
    }

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
        if (part < 0) throw bad(block, module, kind, "part " + part + " (expected >= 0)");
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

    /**
     * Part {@code part} of a full-precision tensor kept in its checkpoint's dtype ({@code float32},
     * {@code bfloat16} or {@code float16}): {@code data} holds whole rows of {@code shape}, little-endian.
     */
    public static TensorRecord slice(int block, String module, String kind, String dtype, byte[] data, int part, long... shape) {
        int width = elementBytes(dtype);
        if (width == 0) throw bad(block, module, kind, "dtype " + dtype + " (expected float32, bfloat16 or float16)");
        String format = dtype.equals(FLOAT32) ? "fp32" : dtype.equals(BFLOAT16) ? "bf16" : "fp16";
        return new TensorRecord(block, module, kind, dtype, shape.clone(), 0, 0, format, data, crc32c(data), part);
    }

    /** Bytes per element of a full-precision dtype, 0 for any other. */
    public static int elementBytes(String dtype) {
        return switch (dtype) {
            case FLOAT32 -> 4;
            case BFLOAT16, FLOAT16 -> 2;
            default -> 0;
        };
    }

    /**
     * Rows of {@code shape}'s first dimension per part when a tensor of {@code shape} in {@code dtype} is split
     * into values of at most {@link #PART_BYTES} (all rows when it fits one).
     */
    public static long rowsPerPart(long[] shape, String dtype) {
        long rowBytes = elementBytes(dtype);
        for (int i = 1; i < shape.length; i++) rowBytes *= shape[i];
        long rows = shape.length == 0 ? 1 : shape[0];
        return Math.max(1, Math.min(rows, PART_BYTES / Math.max(1, rowBytes)));
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

    /**
     * The values as float32 (bfloat16 and float16 widened exactly). A part of a split tensor gives its slice's
     * values; a tensor stored whole must hold exactly its shape's bytes.
     */
    public float[] toFloats() {
        int width = elementBytes(dtype);
        if (width == 0) requireDtype(FLOAT32);
        boolean whole = part == 0 && (shape.length == 0 || rowsPerPart(shape, dtype) >= shape[0]);
        if (whole) requireBytes(Math.multiplyExact((long) elementCount(), width));
        else if (data.length % width != 0) requireBytes(data.length - data.length % width);
        return decode(data, 0, data.length / width, dtype);
    }

    /** {@code count} values of a float32 / bfloat16 / float16 byte array from element {@code from}. */
    public static float[] decode(byte[] bytes, int from, int count, String dtype) {
        DType d = switch (dtype) {
            case FLOAT32 -> DType.F32;
            case BFLOAT16 -> DType.BF16;
            case FLOAT16 -> DType.F16;
            default -> throw new IllegalStateException("dtype " + dtype + " is not a float dtype");
        };
        return d.decode(bytes, from, count);
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
        int n = requirePacked();
        try {
            return BitPacking.unpack(data, bits, n);
        } catch (IllegalArgumentException e) {
            throw new ModelFormatException(describe() + ": " + e.getMessage(), e);
        }
    }

    /**
     * The levels of a {@code uint<bits>-packed} tensor as stored, checked as {@link #levels} checks them: one
     * little-endian bit stream in row-major order, level {@code i} in bits {@code [i·bits, (i+1)·bits)} counted from
     * bit 0 of byte 0. The array itself, not a copy.
     */
    public byte[] packedLevels() {
        int n = requirePacked();
        if (data.length != BitPacking.packedLength(n, bits)) {
            throw new ModelFormatException(describe() + ": packed data has " + data.length + " bytes, expected "
                    + BitPacking.packedLength(n, bits) + " for " + n + " values of " + bits + " bits");
        }
        return data;
    }

    /** The element count of a packed-levels tensor, or an error saying it is not one. */
    private int requirePacked() {
        if (bits < 1 || !dtype.equals(packedDtype(bits))) {
            throw new IllegalStateException(describe() + ": dtype " + dtype + " with bits " + bits
                    + " is not packed levels (expected " + (bits < 1 ? "uint<bits>-packed, bits 1..8" : packedDtype(bits)) + ")");
        }
        return elementCount();
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
        return "block " + block + " module " + module + " kind " + kind + (part > 0 ? " part " + part : "");
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
        return block == r.block && part == r.part && bits == r.bits && groupSize == r.groupSize && module.equals(r.module)
                && kind.equals(r.kind) && dtype.equals(r.dtype) && format.equals(r.format)
                && checksum.equals(r.checksum) && Arrays.equals(shape, r.shape) && Arrays.equals(data, r.data);
    }

    @Override
    public int hashCode() {
        // data is left to the checksum: hashing megabytes of weights buys nothing
        return Objects.hash(block, part, module, kind, dtype, Arrays.hashCode(shape), bits, groupSize, format,
                data.length, checksum);
    }

    @Override
    public String toString() {
        return "TensorRecord[block=" + block + ", module=" + module + ", kind=" + kind + ", dtype=" + dtype
                + ", shape=" + Arrays.toString(shape) + ", bits=" + bits + ", groupSize=" + groupSize
                + ", format=" + format + ", bytes=" + data.length + ", checksum=" + checksum
                + (part > 0 ? ", part=" + part : "") + "]";
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

    static void checkName(int block, String module, String kind, String field, String value) {
        String problem = io.blockquant.model.PathSegment.problem(value);
        if (problem != null) {
            throw bad(block, module, kind, field + " name '" + value + "' " + problem + " (expected a plain tensor name)");
        }
    }

    private static IllegalArgumentException bad(int block, String module, String kind, String what) {
        return new IllegalArgumentException("block " + block + " module " + module + " kind " + kind + ": " + what);
    }
}
