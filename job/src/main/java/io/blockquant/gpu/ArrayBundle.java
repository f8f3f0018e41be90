package io.blockquant.gpu;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * Named arrays in one little-endian file: what the GPU check carries to a machine with no Maven, no network
 * and only {@code java.base} (inputs, model weights, CPU reference outputs). Floats that are exactly bfloat16
 * (the tiny models' weights) are stored in 2 bytes and read back exactly.
 *
 * <p>Layout: {@code "BQA1"}, int count, then per array: short name length, UTF-8 name, byte type
 * (0 float32, 1 int32, 2 bfloat16, 3 bytes), byte rank, rank longs of shape, the values.
 */
public final class ArrayBundle {

    private static final int MAGIC = 0x31415142; // "BQA1" read little-endian
    private static final byte F32 = 0, I32 = 1, BF16 = 2, BYTES = 3;

    private record Entry(Object values, long[] shape) {}

    private final Map<String, Entry> entries = new LinkedHashMap<>();

    public ArrayBundle putFloats(String name, float[] values, long... shape) {
        checkShape(name, values.length, shape);
        entries.put(name, new Entry(values, shape.clone()));
        return this;
    }

    public ArrayBundle putInts(String name, int[] values, long... shape) {
        checkShape(name, values.length, shape);
        entries.put(name, new Entry(values, shape.clone()));
        return this;
    }

    public ArrayBundle putBytes(String name, byte[] values) {
        entries.put(name, new Entry(values, new long[] {values.length}));
        return this;
    }

    public boolean has(String name) {
        return entries.containsKey(name);
    }

    public Set<String> names() {
        return entries.keySet();
    }

    public long[] shape(String name) {
        return entry(name).shape.clone();
    }

    public float[] floats(String name) {
        return as(name, float[].class);
    }

    public int[] ints(String name) {
        return as(name, int[].class);
    }

    public byte[] bytes(String name) {
        return as(name, byte[].class);
    }

    private <T> T as(String name, Class<T> type) {
        Object v = entry(name).values;
        if (!type.isInstance(v)) throw new IllegalArgumentException("array '" + name + "' is not " + type.getSimpleName());
        return type.cast(v);
    }

    private Entry entry(String name) {
        Entry e = entries.get(name);
        if (e == null) throw new IllegalArgumentException("no array '" + name + "' in the bundle");
        return e;
    }

    private static void checkShape(String name, int length, long[] shape) {
        long n = 1;
        for (long d : shape) n *= d;
        if (n != length) throw new IllegalArgumentException(name + ": shape " + Arrays.toString(shape) + " for " + length + " values");
    }

    public void write(Path file) throws IOException {
        try (OutputStream out = new BufferedOutputStream(Files.newOutputStream(file), 1 << 20)) {
            ByteBuffer head = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(MAGIC).putInt(entries.size());
            out.write(head.array());
            for (Map.Entry<String, Entry> e : entries.entrySet()) {
                Object v = e.getValue().values;
                byte type = v instanceof int[] ? I32 : v instanceof byte[] ? BYTES : isBf16((float[]) v) ? BF16 : F32;
                byte[] name = e.getKey().getBytes(StandardCharsets.UTF_8);
                long[] shape = e.getValue().shape;
                ByteBuffer h = ByteBuffer.allocate(2 + name.length + 2 + 8 * shape.length).order(ByteOrder.LITTLE_ENDIAN);
                h.putShort((short) name.length).put(name).put(type).put((byte) shape.length);
                for (long d : shape) h.putLong(d);
                out.write(h.array());
                out.write(encode(v, type));
            }
        }
    }

    private static boolean isBf16(float[] v) {
        for (float x : v) if ((Float.floatToRawIntBits(x) & 0xffff) != 0) return false;
        return true;
    }

    private static byte[] encode(Object v, byte type) {
        switch (type) {
            case BYTES:
                return (byte[]) v;
            case I32: {
                int[] a = (int[]) v;
                ByteBuffer b = ByteBuffer.allocate(4 * a.length).order(ByteOrder.LITTLE_ENDIAN);
                b.asIntBuffer().put(a);
                return b.array();
            }
            case BF16: {
                float[] a = (float[]) v;
                ByteBuffer b = ByteBuffer.allocate(2 * a.length).order(ByteOrder.LITTLE_ENDIAN);
                for (float x : a) b.putShort((short) (Float.floatToRawIntBits(x) >>> 16));
                return b.array();
            }
            default: {
                float[] a = (float[]) v;
                ByteBuffer b = ByteBuffer.allocate(4 * a.length).order(ByteOrder.LITTLE_ENDIAN);
                b.asFloatBuffer().put(a);
                return b.array();
            }
        }
    }

    public static ArrayBundle read(Path file) throws IOException {
        ArrayBundle bundle = new ArrayBundle();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            ByteBuffer b = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size()).order(ByteOrder.LITTLE_ENDIAN);
            if (b.remaining() < 8 || b.getInt() != MAGIC) throw new IOException(file + ": not an array bundle (no BQA1 header)");
            int count = b.getInt();
            for (int i = 0; i < count; i++) {
                byte[] name = new byte[b.getShort()];
                b.get(name);
                byte type = b.get();
                long[] shape = new long[b.get()];
                long n = 1;
                for (int d = 0; d < shape.length; d++) n *= shape[d] = b.getLong();
                int len = Math.toIntExact(n);
                Object values;
                switch (type) {
                    case BYTES: { byte[] a = new byte[len]; b.get(a); values = a; break; }
                    case I32: { int[] a = new int[len]; b.asIntBuffer().get(a); b.position(b.position() + 4 * len); values = a; break; }
                    case BF16: {
                        float[] a = new float[len];
                        for (int k = 0; k < len; k++) a[k] = Float.intBitsToFloat((b.getShort() & 0xffff) << 16);
                        values = a;
                        break;
                    }
                    case F32: { float[] a = new float[len]; b.asFloatBuffer().get(a); b.position(b.position() + 4 * len); values = a; break; }
                    default: throw new IOException(file + ": array '" + new String(name, StandardCharsets.UTF_8) + "' has unknown type " + type);
                }
                bundle.entries.put(new String(name, StandardCharsets.UTF_8), new Entry(values, shape));
            }
        }
        return bundle;
    }
}
