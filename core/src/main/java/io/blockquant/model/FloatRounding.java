package io.blockquant.model;

/** Rounding a float32 to the nearest bfloat16 / float16 value (ties to even), kept as a float32. */
public final class FloatRounding {
    private FloatRounding() {}

    public static float toBfloat16(float v) {
        if (!Float.isFinite(v)) return v;
        int bits = Float.floatToRawIntBits(v);
        int rounded = (bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000;
        return Float.intBitsToFloat(rounded);
    }

    public static float toFloat16(float v) {
        if (!Float.isFinite(v) || v == 0f) return v;
        double a = Math.abs(v);
        int exp = Math.max(Math.getExponent(v), -14); // below 2^-14 float16 is subnormal: fixed 2^-24 steps
        double ulp = Math.scalb(1.0, exp - 10);
        double r = Math.rint(a / ulp) * ulp;       // rint: ties to even
        if (r > 65504.0) r = Double.POSITIVE_INFINITY;
        return (float) Math.copySign(r, v);
    }
}
