package io.blockquant.model;

/** IEEE 754 binary16 to and from float32 (Java 17 has no Float.float16ToFloat / floatToFloat16). */
public final class HalfFloat {
    private HalfFloat() {}

    public static float toFloat(short bits) {
        int h = bits & 0xffff;
        int sign = (h & 0x8000) << 16;
        int exp = (h >>> 10) & 0x1f;
        int mant = h & 0x3ff;
        if (exp == 0x1f) { // inf or NaN
            return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
        }
        if (exp == 0) {
            if (mant == 0) return Float.intBitsToFloat(sign);
            // subnormal: mant · 2^-24
            float v = mant * 0x1p-24f;
            return sign != 0 ? -v : v;
        }
        return Float.intBitsToFloat(sign | ((exp - 15 + 127) << 23) | (mant << 13));
    }

    /** The binary16 bits of {@code v} rounded to the nearest float16 (ties to even; beyond ±65504 is ±inf). */
    static short toBits(float v) {
        if (Float.isNaN(v)) return (short) 0x7e00;
        float r = FloatRounding.toFloat16(v);
        int sign = (Float.floatToRawIntBits(r) >>> 16) & 0x8000;
        float a = Math.abs(r);
        if (Float.isInfinite(a)) return (short) (sign | 0x7c00);
        if (a == 0f) return (short) sign;
        int exp = Math.getExponent(a);
        if (exp < -14) return (short) (sign | Math.round(a * 0x1p24f)); // subnormal: a multiple of 2^-24
        int mant = (Float.floatToRawIntBits(a) >>> 13) & 0x3ff;
        return (short) (sign | (exp + 15) << 10 | mant);
    }
}
