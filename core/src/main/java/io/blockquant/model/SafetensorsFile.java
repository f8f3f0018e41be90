package io.blockquant.model;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * One safetensors file read through the Hadoop FileSystem API, so {@code file:}, {@code hdfs:} and
 * {@code s3a:} paths all work. The header is read and checked against the file length when the file is
 * opened; tensors are read one at a time with positioned reads, never the whole file into the heap.
 *
 * <p>Format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
 * {@code {dtype, shape, data_offsets: [begin, end]}} (offsets relative to the end of the header), then
 * the data.
 */
public final class SafetensorsFile implements Closeable {

    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

    /** Where one tensor lies in the file. */
    public record Entry(String name, DType dtype, long[] shape, long begin, long end) {
        public long elements() {
            long n = 1;
            for (long d : shape) n *= d;
            return n;
        }
    }

    private final Path path;
    private final FSDataInputStream in;
    private final long dataStart;
    private final Map<String, Entry> entries;
    private final Map<String, String> metadata;

    private SafetensorsFile(Path path, FSDataInputStream in, long dataStart, Map<String, Entry> entries,
                            Map<String, String> metadata) {
        this.path = path;
        this.in = in;
        this.dataStart = dataStart;
        this.entries = entries;
        this.metadata = metadata;
    }

    public static SafetensorsFile open(FileSystem fs, Path path) {
        FSDataInputStream in = null;
        try {
            long length = fs.getFileStatus(path).getLen();
            in = fs.open(path);
            SafetensorsFile file = parse(path, in, length);
            in = null; // owned by the file now
            return file;
        } catch (java.io.FileNotFoundException e) {
            throw new ModelFormatException(path + ": file not found");
        } catch (IOException e) {
            throw new ModelFormatException(path + ": cannot read (" + e.getMessage() + ")", e);
        } finally {
            if (in != null) {
                try {
                    in.close();
                } catch (IOException ignored) {
                    // the error being thrown says more
                }
            }
        }
    }

    private static SafetensorsFile parse(Path path, FSDataInputStream in, long length) throws IOException {
        if (length < 8) {
            throw new ModelFormatException(path + ": truncated safetensors file (" + length
                    + " bytes, shorter than the 8-byte header length)");
        }
        byte[] lenBytes = new byte[8];
        in.readFully(0, lenBytes);
        long headerLength = ByteBuffer.wrap(lenBytes).order(ByteOrder.LITTLE_ENDIAN).getLong();
        if (headerLength <= 0 || headerLength > length - 8) {
            throw new ModelFormatException(path + ": header length " + headerLength
                    + " runs past the end of the file (" + length + " bytes); the file is truncated or not safetensors");
        }
        if (headerLength > 100_000_000) {
            throw new ModelFormatException(path + ": header length " + headerLength + " is implausibly large (over 100 MB)");
        }
        byte[] headerBytes = new byte[(int) headerLength];
        in.readFully(8, headerBytes);
        JsonNode header;
        try {
            header = JSON.readTree(new String(headerBytes, StandardCharsets.UTF_8));
        } catch (IOException e) {
            String why = firstLine(e instanceof com.fasterxml.jackson.core.JsonProcessingException j ? j.getOriginalMessage() : e.getMessage());
            if (why.startsWith("Duplicate field")) {
                throw new ModelFormatException(path + ": header names a tensor twice (" + why + ")", e);
            }
            throw new ModelFormatException(path + ": header is not valid JSON (" + why + ")", e);
        }
        if (header == null || !header.isObject()) {
            throw new ModelFormatException(path + ": header is not a JSON object");
        }
        long dataStart = 8 + headerLength;
        long dataLength = length - dataStart;
        Map<String, Entry> entries = new LinkedHashMap<>();
        Map<String, String> metadata = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> field = it.next();
            String name = field.getKey();
            JsonNode node = field.getValue();
            if (name.equals("__metadata__")) {
                node.fields().forEachRemaining(m -> metadata.put(m.getKey(), m.getValue().asText()));
                continue;
            }
            entries.put(name, parseEntry(path, name, node, dataLength));
        }
        checkNoOverlap(path, entries);
        return new SafetensorsFile(path, in, dataStart, Collections.unmodifiableMap(entries), metadata);
    }

    private static Entry parseEntry(Path path, String name, JsonNode node, long dataLength) {
        String where = path + ": tensor '" + name + "'";
        JsonNode dtypeNode = node.get("dtype"), shapeNode = node.get("shape"), offsetsNode = node.get("data_offsets");
        if (dtypeNode == null || shapeNode == null || offsetsNode == null || !shapeNode.isArray()
                || !offsetsNode.isArray() || offsetsNode.size() != 2) {
            throw new ModelFormatException(where + ": header entry must hold dtype, shape and data_offsets [begin, end]");
        }
        DType dtype = DType.parse(dtypeNode.asText());
        if (dtype == null) {
            throw new ModelFormatException(where + ": unknown dtype '" + dtypeNode.asText()
                    + "' (expected one of " + Arrays.toString(DType.values()) + ")");
        }
        long[] shape = new long[shapeNode.size()];
        long elements = 1;
        for (int i = 0; i < shape.length; i++) {
            JsonNode d = shapeNode.get(i);
            if (!d.isIntegralNumber() || !d.canConvertToLong() || d.asLong() < 0) {
                throw new ModelFormatException(where + ": shape " + shapeNode + " has a negative or non-integer size");
            }
            shape[i] = shapeNode.get(i).asLong();
        }
        long expected;
        try {
            for (long d : shape) elements = Math.multiplyExact(elements, d);
            expected = Math.multiplyExact(elements, (long) dtype.bytes);
        } catch (ArithmeticException e) {
            throw new ModelFormatException(where + ": shape " + Arrays.toString(shape) + " of " + dtype
                    + " is too large (its byte size overflows a 64-bit integer)");
        }
        for (JsonNode o : offsetsNode) {
            if (!o.isIntegralNumber() || !o.canConvertToLong()) {
                throw new ModelFormatException(where + ": data_offsets " + offsetsNode + " are not two integers [begin, end]");
            }
        }
        long begin = offsetsNode.get(0).asLong(), end = offsetsNode.get(1).asLong();
        if (begin < 0 || end < begin) {
            throw new ModelFormatException(where + ": data_offsets " + offsetsNode + " are not 0 <= begin <= end");
        }
        if (end - begin != expected) {
            throw new ModelFormatException(where + ": dtype " + dtype + " with shape " + Arrays.toString(shape)
                    + " needs " + expected + " bytes but data_offsets " + offsetsNode + " span " + (end - begin));
        }
        if (end > dataLength) {
            throw new ModelFormatException(where + ": data_offsets " + offsetsNode + " end past the data section ("
                    + dataLength + " bytes); the file is truncated or its header is wrong");
        }
        return new Entry(name, dtype, shape, begin, end);
    }

    private static void checkNoOverlap(Path path, Map<String, Entry> entries) {
        List<Entry> sorted = new ArrayList<>(entries.values());
        sorted.sort(Comparator.comparingLong(Entry::begin));
        for (int i = 1; i < sorted.size(); i++) {
            Entry prev = sorted.get(i - 1), cur = sorted.get(i);
            if (cur.begin() < prev.end()) {
                throw new ModelFormatException(path + ": tensors '" + prev.name() + "' [" + prev.begin() + ", "
                        + prev.end() + ") and '" + cur.name() + "' [" + cur.begin() + ", " + cur.end() + ") overlap");
            }
        }
    }

    private static String firstLine(String s) {
        int nl = s == null ? -1 : s.indexOf('\n');
        return nl < 0 ? String.valueOf(s) : s.substring(0, nl);
    }

    public Path path() {
        return path;
    }

    public Map<String, Entry> entries() {
        return entries;
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    public Entry entry(String name) {
        Entry e = entries.get(name);
        if (e == null) throw new ModelFormatException(path + ": no tensor named '" + name + "'");
        return e;
    }

    /** The tensor as float32, upcast from F32, F16 or BF16. */
    public float[] readFloats(String name) {
        Entry e = entry(name);
        if (!e.dtype().isFloatWeight()) {
            throw new ModelFormatException(path + ": tensor '" + name + "' has dtype " + e.dtype()
                    + ", expected F32, F16 or BF16");
        }
        ByteBuffer buf = readBytes(e);
        int n = (int) e.elements();
        float[] out = new float[n];
        switch (e.dtype()) {
            case F32:
                buf.asFloatBuffer().get(out);
                break;
            case F16:
                for (int i = 0; i < n; i++) out[i] = HalfFloat.toFloat(buf.getShort(2 * i));
                break;
            case BF16:
                for (int i = 0; i < n; i++) out[i] = Float.intBitsToFloat((buf.getShort(2 * i) & 0xffff) << 16);
                break;
            default:
                throw new AssertionError(e.dtype());
        }
        return out;
    }

    /**
     * {@code length} bytes of tensor {@code name}'s data from byte {@code offset} of that tensor, as stored
     * (little-endian, the tensor's dtype): a slice of rows without reading the rest.
     */
    public byte[] readRange(String name, long offset, int length) {
        Entry e = entry(name);
        if (offset < 0 || length < 0 || offset + length > e.end() - e.begin()) {
            throw new IllegalArgumentException(path + ": bytes " + offset + "+" + length + " outside tensor '" + name
                    + "' (" + (e.end() - e.begin()) + " bytes)");
        }
        byte[] bytes = new byte[length];
        try {
            synchronized (in) {
                in.readFully(dataStart + e.begin() + offset, bytes);
            }
        } catch (java.io.EOFException ex) {
            throw new ModelFormatException(path + ": tensor '" + name + "' is cut off: the file is truncated", ex);
        } catch (IOException ex) {
            throw new ModelFormatException(path + ": cannot read tensor '" + name + "' (" + ex.getMessage() + ")", ex);
        }
        return bytes;
    }

    /** An integer tensor (I32 or I64) as int values. */
    public int[] readInts(String name) {
        Entry e = entry(name);
        ByteBuffer buf = readBytes(e);
        int n = (int) e.elements();
        int[] out = new int[n];
        switch (e.dtype()) {
            case I32:
                buf.asIntBuffer().get(out);
                break;
            case I64:
                for (int i = 0; i < n; i++) out[i] = Math.toIntExact(buf.getLong(8 * i));
                break;
            default:
                throw new ModelFormatException(path + ": tensor '" + name + "' has dtype " + e.dtype() + ", expected I32 or I64");
        }
        return out;
    }

    private ByteBuffer readBytes(Entry e) {
        long size = e.end() - e.begin();
        if (size > Integer.MAX_VALUE - 16) {
            throw new ModelFormatException(path + ": tensor '" + e.name() + "' is " + size
                    + " bytes, over the 2 GiB a single read supports");
        }
        byte[] bytes = new byte[(int) size];
        try {
            synchronized (in) {
                in.readFully(dataStart + e.begin(), bytes);
            }
        } catch (java.io.EOFException ex) {
            throw new ModelFormatException(path + ": tensor '" + e.name() + "' is cut off: the file is truncated", ex);
        } catch (IOException ex) {
            throw new ModelFormatException(path + ": cannot read tensor '" + e.name() + "' (" + ex.getMessage() + ")", ex);
        }
        return ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    @Override
    public void close() throws IOException {
        in.close();
    }
}
