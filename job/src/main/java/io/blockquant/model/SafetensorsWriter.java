package io.blockquant.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Writes one safetensors file (the layout {@link SafetensorsFile} reads) through the Hadoop FileSystem API:
 * the 8-byte little-endian header length, the JSON header (padded with spaces to a multiple of 8 bytes, as
 * the reference writer does, so every tensor starts 8-byte aligned), then each tensor's bytes in the order
 * given. The file is written under a temporary name beside the target and renamed at the end: it is either
 * whole or absent.
 */
public final class SafetensorsWriter {

    private static final ObjectMapper JSON = new ObjectMapper();

    /** One tensor to write: little-endian bytes of {@code dtype} in row-major order of {@code shape}. */
    public record Tensor(String name, DType dtype, long[] shape, byte[] data) {
        public Tensor {
            long n = 1;
            for (long d : shape) n = Math.multiplyExact(n, d);
            if (n * dtype.bytes != data.length) {
                throw new IllegalArgumentException("tensor '" + name + "': " + data.length + " bytes for " + dtype
                        + " " + Arrays.toString(shape) + " (expected " + n * dtype.bytes + ")");
            }
        }

        public static Tensor ints(String name, int[] values, long... shape) {
            ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
            b.asIntBuffer().put(values);
            return new Tensor(name, DType.I32, shape, b.array());
        }

        public static Tensor floats(String name, float[] values, long... shape) {
            ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
            b.asFloatBuffer().put(values);
            return new Tensor(name, DType.F32, shape, b.array());
        }

        /** float32 values rounded to float16 or bfloat16 (ties to even), or kept as float32. */
        public static Tensor floats(String name, DType dtype, float[] values, long... shape) {
            if (dtype == DType.F32) return floats(name, values, shape);
            if (dtype != DType.F16 && dtype != DType.BF16) {
                throw new IllegalArgumentException("tensor '" + name + "': " + dtype + " is not F32, F16 or BF16");
            }
            ByteBuffer b = ByteBuffer.allocate(values.length * 2).order(ByteOrder.LITTLE_ENDIAN);
            for (float v : values) {
                b.putShort(dtype == DType.F16 ? HalfFloat.toBits(v)
                        : (short) (Float.floatToRawIntBits(FloatRounding.toBfloat16(v)) >>> 16));
            }
            return new Tensor(name, dtype, shape, b.array());
        }
    }

    private SafetensorsWriter() {}

    public static void write(FileSystem fs, Path path, List<Tensor> tensors, Map<String, String> metadata) {
        ObjectNode header = JSON.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode m = header.putObject("__metadata__");
            metadata.forEach(m::put);
        }
        Set<String> names = new HashSet<>();
        long offset = 0;
        for (Tensor t : tensors) {
            if (!names.add(t.name()) || t.name().equals("__metadata__")) {
                throw new IllegalArgumentException(path + ": tensor name '" + t.name() + "' is used twice or reserved");
            }
            ObjectNode e = header.putObject(t.name());
            e.put("dtype", t.dtype().name());
            var shape = e.putArray("shape");
            for (long d : t.shape()) shape.add(d);
            var offsets = e.putArray("data_offsets");
            offsets.add(offset);
            offsets.add(offset + t.data().length);
            offset += t.data().length;
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8;
        byte[] headerBytes = Arrays.copyOf(json, padded);
        Arrays.fill(headerBytes, json.length, padded, (byte) ' ');
        Path tmp = new Path(path.getParent(), "." + path.getName() + ".tmp");
        try {
            try (OutputStream out = fs.create(tmp, true)) {
                out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(padded).array());
                out.write(headerBytes);
                for (Tensor t : tensors) out.write(t.data());
            }
            fs.delete(path, false);
            if (!fs.rename(tmp, path)) throw new IOException("cannot rename " + tmp + " to " + path);
        } catch (IOException e) {
            throw new UncheckedIOException(path + ": cannot write the safetensors file (" + e.getMessage() + ")", e);
        }
    }
}
