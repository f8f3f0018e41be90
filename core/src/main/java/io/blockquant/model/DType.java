package io.blockquant.model;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Locale;

/** The element types a safetensors header may name, with their widths in bytes. */
public enum DType {
    F64(8), F32(4), F16(2), BF16(2), I64(8), I32(4), I16(2), I8(1), U8(1), BOOL(1),
    F8_E4M3(1), F8_E5M2(1);

    public final int bytes;

    DType(int bytes) {
        this.bytes = bytes;
    }

    /** The dtype named in a header, or null when the name is not a safetensors dtype. */
    public static DType parse(String name) {
        try {
            return valueOf(name.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    public boolean isFloatWeight() {
        return this == F32 || this == F16 || this == BF16;
    }

    /** {@code count} little-endian values of this float dtype (F32, BF16, F16) from element {@code from} of {@code bytes}. */
    public float[] decode(byte[] bytes, int from, int count) {
        float[] out = new float[count];
        ByteBuffer buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        switch (this) {
            case F32 -> buf.position(4 * from).slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
            case BF16 -> {
                for (int i = 0; i < count; i++) out[i] = Float.intBitsToFloat((buf.getShort(2 * (from + i)) & 0xffff) << 16);
            }
            case F16 -> {
                for (int i = 0; i < count; i++) out[i] = HalfFloat.toFloat(buf.getShort(2 * (from + i)));
            }
            default -> throw new IllegalStateException("dtype " + this + " is not a float dtype");
        }
        return out;
    }
}
