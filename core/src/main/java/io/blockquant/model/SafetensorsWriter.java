package io.blockquant.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedOutputStream;
import java.io.Closeable;
import java.io.IOException;
import java.io.OutputStream;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Writes one safetensors file (the layout {@link SafetensorsFile} reads) through the Hadoop FileSystem API:
 * the 8-byte little-endian header length, the JSON header (padded with spaces to a multiple of 8 bytes, as
 * the reference writer does, so every tensor starts 8-byte aligned), then each tensor's bytes in the order
 * given. The file is written under a temporary name beside the target and renamed at the end: it is either
 * whole or absent.
 *
 * <p>{@link #write} takes tensors in memory; {@link #open} takes only their {@link Header}s and lets the bytes
 * come afterwards, tensor by tensor and piece by piece, so a shard of a large model is written without any
 * JVM holding it.
 */
public final class SafetensorsWriter {

    private static final ObjectMapper JSON = new ObjectMapper();

    /** A tensor's header entry: name, dtype and shape, which fix its byte count. */
    public record Header(String name, DType dtype, long[] shape) implements Serializable {
        public Header {
            bytesOf(name, dtype, shape);
        }

        /** Bytes of the tensor's data: elements × dtype width. */
        public long bytes() {
            return bytesOf(name, dtype, shape);
        }

        private static long bytesOf(String name, DType dtype, long[] shape) {
            long n = 1;
            for (long d : shape) {
                if (d < 0) throw new IllegalArgumentException("tensor '" + name + "': negative dimension in " + Arrays.toString(shape));
                n = Math.multiplyExact(n, d);
            }
            return Math.multiplyExact(n, (long) dtype.bytes);
        }

        @Override
        public String toString() {
            return name + " " + dtype + " " + Arrays.toString(shape);
        }
    }

    /** One tensor to write: little-endian bytes of {@code dtype} in row-major order of {@code shape}. */
    public record Tensor(String name, DType dtype, long[] shape, byte[] data) {
        public Tensor {
            long n = new Header(name, dtype, shape).bytes();
            if (n != data.length) {
                throw new IllegalArgumentException("tensor '" + name + "': " + data.length + " bytes for " + dtype
                        + " " + Arrays.toString(shape) + " (expected " + n + ")");
            }
        }

        public Header header() {
            return new Header(name, dtype, shape);
        }

        public static Tensor ints(String name, int[] values, long... shape) {
            ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
            b.asIntBuffer().put(values);
            return new Tensor(name, DType.I32, shape, b.array());
        }

        public static Tensor floats(String name, float[] values, long... shape) {
            return new Tensor(name, DType.F32, shape, encode(DType.F32, values));
        }

        /** float32 values rounded to float16 or bfloat16 (ties to even), or kept as float32. */
        public static Tensor floats(String name, DType dtype, float[] values, long... shape) {
            if (!dtype.isFloatWeight()) {
                throw new IllegalArgumentException("tensor '" + name + "': " + dtype + " is not F32, F16 or BF16");
            }
            return new Tensor(name, dtype, shape, encode(dtype, values));
        }
    }

    private SafetensorsWriter() {}

    /**
     * float32 values as little-endian bytes of {@code dtype}: F32 as they are, F16 and BF16 rounded to the nearest
     * (ties to even).
     */
    public static byte[] encode(DType dtype, float[] values) {
        ByteBuffer b = ByteBuffer.allocate(Math.multiplyExact(values.length, dtype.bytes)).order(ByteOrder.LITTLE_ENDIAN);
        switch (dtype) {
            case F32 -> b.asFloatBuffer().put(values);
            case F16 -> {
                for (float v : values) b.putShort(HalfFloat.toBits(v));
            }
            case BF16 -> {
                for (float v : values) b.putShort((short) (Float.floatToRawIntBits(FloatRounding.toBfloat16(v)) >>> 16));
            }
            default -> throw new IllegalArgumentException(dtype + " is not F32, F16 or BF16");
        }
        return b.array();
    }

    public static void write(FileSystem fs, Path path, List<Tensor> tensors, Map<String, String> metadata) {
        List<Header> headers = new ArrayList<>(tensors.size());
        for (Tensor t : tensors) headers.add(t.header());
        try (Streaming out = open(fs, path, headers, metadata)) {
            for (Tensor t : tensors) out.write(t);
            out.finish();
        }
    }

    /** Bytes of the file that {@link #open} writes for {@code headers}: 8 + the padded header + the data. */
    public static long fileBytes(List<Header> headers, Map<String, String> metadata) {
        long data = 0;
        for (Header h : headers) data += h.bytes();
        return 8 + headerBytes(headers, metadata, null).length + data;
    }

    /**
     * Starts the file at {@code path}: writes the header of {@code headers} (in file order) to a temporary file
     * beside it. The tensors' bytes must then come in the same order through {@link Streaming#write}.
     */
    public static Streaming open(FileSystem fs, Path path, List<Header> headers, Map<String, String> metadata) {
        byte[] header = headerBytes(headers, metadata, path);
        Path tmp = new Path(path.getParent(), "." + path.getName() + ".tmp-" + UUID.randomUUID());
        try {
            OutputStream out = new BufferedOutputStream(fs.create(tmp, false), 1 << 20);
            try {
                out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(header.length).array());
                out.write(header);
            } catch (IOException e) {
                out.close();
                fs.delete(tmp, false);
                throw e;
            }
            return new Streaming(fs, path, tmp, out, List.copyOf(headers));
        } catch (IOException e) {
            throw new UncheckedIOException(path + ": cannot write the safetensors file (" + e.getMessage() + ")", e);
        }
    }

    /** The JSON header, padded with spaces to a multiple of 8 bytes. */
    private static byte[] headerBytes(List<Header> headers, Map<String, String> metadata, Path path) {
        ObjectNode header = JSON.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode m = header.putObject("__metadata__");
            metadata.forEach(m::put);
        }
        Set<String> names = new HashSet<>();
        long offset = 0;
        for (Header t : headers) {
            if (!names.add(t.name()) || t.name().equals("__metadata__")) {
                throw new IllegalArgumentException(path + ": tensor name '" + t.name() + "' is used twice or reserved");
            }
            ObjectNode e = header.putObject(t.name());
            e.put("dtype", t.dtype().name());
            var shape = e.putArray("shape");
            for (long d : t.shape()) shape.add(d);
            var offsets = e.putArray("data_offsets");
            offsets.add(offset);
            offsets.add(offset + t.bytes());
            offset += t.bytes();
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8;
        byte[] bytes = Arrays.copyOf(json, padded);
        Arrays.fill(bytes, json.length, padded, (byte) ' ');
        return bytes;
    }

    /**
     * A safetensors file whose header is written and whose tensors' bytes are coming, in header order. A tensor
     * may come in several pieces (consecutive calls with its name). {@link #finish} checks that every byte came
     * and renames the file into place; {@link #close} without finish deletes it.
     */
    public static final class Streaming implements Closeable {
        private final FileSystem fs;
        private final Path path, tmp;
        private final OutputStream out;
        private final List<Header> headers;
        private int at = -1;
        private long written;
        private boolean finished;

        private Streaming(FileSystem fs, Path path, Path tmp, OutputStream out, List<Header> headers) {
            this.fs = fs;
            this.path = path;
            this.tmp = tmp;
            this.out = out;
            this.headers = headers;
        }

        /** A whole tensor, which must be the next one of the header with the same dtype and shape. */
        public void write(Tensor t) {
            Header next = at + 1 < headers.size() ? headers.get(at + 1) : null;
            if (next != null && next.name().equals(t.name())
                    && (next.dtype() != t.dtype() || !Arrays.equals(next.shape(), t.shape()))) {
                throw new IllegalStateException(path + ": tensor '" + t.name() + "' is " + t.dtype() + " "
                        + Arrays.toString(t.shape()) + ", its header says " + next.dtype() + " " + Arrays.toString(next.shape()));
            }
            write(t.name(), t.data(), 0, t.data().length);
        }

        /** The next {@code length} bytes of tensor {@code name}: the current tensor, or the next one once the current is whole. */
        public void write(String name, byte[] data, int offset, int length) {
            if (at < 0 || !headers.get(at).name().equals(name)) {
                requireWhole();
                at++;
                written = 0;
                if (at >= headers.size() || !headers.get(at).name().equals(name)) {
                    throw new IllegalStateException(path + ": tensor '" + name + "' written where the header expects "
                            + (at >= headers.size() ? "no more tensors" : "'" + headers.get(at).name() + "'"));
                }
            }
            Header h = headers.get(at);
            if (written + length > h.bytes()) {
                throw new IllegalStateException(path + ": tensor '" + name + "' given " + (written + length)
                        + " bytes, its header says " + h.bytes() + " (" + h + ")");
            }
            try {
                out.write(data, offset, length);
            } catch (IOException e) {
                throw new UncheckedIOException(path + ": cannot write tensor '" + name + "' (" + e.getMessage() + ")", e);
            }
            written += length;
        }

        /** Every tensor written whole: the file is closed and renamed into place (replacing an older one). */
        public void finish() {
            requireWhole();
            if (at < headers.size() - 1) {
                throw new IllegalStateException(path + ": finished before tensor '" + headers.get(at + 1).name() + "' was written");
            }
            try {
                out.close();
                finished = true;
                RenameOver.move(fs, tmp, path); // never delete-then-rename: the old file stays until the new one is in
            } catch (IOException e) {
                deleteTmp();
                throw new UncheckedIOException(path + ": cannot write the safetensors file (" + e.getMessage() + ")", e);
            }
        }

        private void requireWhole() {
            if (at >= 0 && written != headers.get(at).bytes()) {
                throw new IllegalStateException(path + ": tensor '" + headers.get(at).name() + "' has " + written
                        + " of its " + headers.get(at).bytes() + " bytes");
            }
        }

        @Override
        public void close() {
            if (finished) return;
            finished = true;
            try {
                out.close();
            } catch (IOException ignored) {
                // the file is deleted next
            }
            deleteTmp();
        }

        private void deleteTmp() {
            try {
                fs.delete(tmp, false);
            } catch (IOException ignored) {
                // a leftover hidden file; the export's folder is replaced or removed as a whole
            }
        }
    }
}
