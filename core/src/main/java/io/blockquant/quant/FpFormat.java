package io.blockquant.quant;

/**
 * The small floating-point formats of ZeroQuant-FP (Wu et al., 2023, section 2): FP8 E4M3 and E5M2 for
 * activations and weights, FP4 E2M1 for weights. A code is the format's bit pattern in the low bits of an
 * {@code int}: {@code sign | exponent | mantissa}, value {@code (−1)^s · 2^(e − bias) · (1 + m/2^M)} for
 * {@code e > 0}, {@code (−1)^s · 2^(1 − bias) · m/2^M} for {@code e = 0} (subnormals).
 *
 * <ul>
 *   <li>{@link #E4M3}: the OCP / PyTorch {@code float8_e4m3fn} variant — bias 7, no infinities, only
 *       {@code S.1111.111} is NaN, so {@code S.1111.110} = ±448 is the largest finite value.</li>
 *   <li>{@link #E5M2}: IEEE-like {@code float8_e5m2} — bias 15, exponent 31 is ±inf (mantissa 0) or NaN;
 *       largest finite value ±57344.</li>
 *   <li>{@link #E2M1}: FP4 — bias 1, no inf/NaN, values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}.</li>
 * </ul>
 *
 * <p>{@link #encode} is a saturating conversion (like CUDA's {@code __NV_SATFINITE}): it rounds to the nearest
 * representable value, ties to an even mantissa, and anything beyond ±max — ±infinity included, also for
 * E5M2 — becomes ±max. NaN becomes the format's NaN with the input's sign ({@code S.1111.111} for E4M3,
 * {@code S.11111.11} for E5M2); FP4 has no NaN, so encoding NaN to it throws. The sign of zero is kept.
 */
public enum FpFormat {
    E4M3(4, 3, 7, Specials.NAN_ONLY),
    E5M2(5, 2, 15, Specials.IEEE),
    E2M1(2, 1, 1, Specials.NONE);

    /** Which top-exponent codes are not numbers. */
    private enum Specials {
        /** only S.1…1.1…1 is NaN (the "fn" variants): the top binade is otherwise finite */
        NAN_ONLY,
        /** IEEE 754: the top exponent is ±inf (mantissa 0) or NaN */
        IEEE,
        /** every code is a finite number */
        NONE
    }

    private final int exponentBits;
    private final int mantissaBits;
    private final int bias;
    private final Specials specials;
    private final int maxCode;    // the largest finite positive code
    private final float maxValue;
    private final float[] table;  // decode table, one entry per code

    FpFormat(int exponentBits, int mantissaBits, int bias, Specials specials) {
        this.exponentBits = exponentBits;
        this.mantissaBits = mantissaBits;
        this.bias = bias;
        this.specials = specials;
        int codes = 1 << bits();
        this.table = new float[codes];
        for (int c = 0; c < codes; c++) table[c] = decodeSlow(c);
        int mc = (1 << (bits() - 1)) - 1; // S=0, all ones
        while (!Float.isFinite(table[mc])) mc--;
        this.maxCode = mc;
        this.maxValue = table[mc];
    }

    /** Total width: 1 sign bit + exponent + mantissa. */
    public int bits() {
        return 1 + exponentBits + mantissaBits;
    }

    public int exponentBits() {
        return exponentBits;
    }

    public int mantissaBits() {
        return mantissaBits;
    }

    public int bias() {
        return bias;
    }

    /** The largest finite value: 448, 57344 or 6. */
    public float maxValue() {
        return maxValue;
    }

    /** The code of {@code +maxValue()}. */
    public int maxCode() {
        return maxCode;
    }

    /** The sign bit of a code. */
    public int signBit() {
        return 1 << (bits() - 1);
    }

    /** Number of codes, {@code 2^bits}. */
    public int codeCount() {
        return 1 << bits();
    }

    public boolean hasInfinity() {
        return specials == Specials.IEEE;
    }

    public boolean hasNaN() {
        return specials != Specials.NONE;
    }

    /** The value of a code (NaN and ±inf where the format has them). */
    public float decode(int code) {
        if (code < 0 || code >= table.length) {
            throw new IllegalArgumentException(this + " code " + code + " is outside 0.." + (table.length - 1));
        }
        return table[code];
    }

    private float decodeSlow(int code) {
        int sign = code >>> (exponentBits + mantissaBits) & 1;
        int e = code >>> mantissaBits & ((1 << exponentBits) - 1);
        int m = code & ((1 << mantissaBits) - 1);
        int eMax = (1 << exponentBits) - 1;
        float v;
        if (specials == Specials.NAN_ONLY && e == eMax && m == (1 << mantissaBits) - 1) {
            v = Float.NaN;
        } else if (specials == Specials.IEEE && e == eMax) {
            v = m == 0 ? Float.POSITIVE_INFINITY : Float.NaN;
        } else if (e == 0) {
            v = Math.scalb((float) m, 1 - bias - mantissaBits);
        } else {
            v = Math.scalb((float) ((1 << mantissaBits) + m), e - bias - mantissaBits);
        }
        return sign == 1 ? -v : v;
    }

    /**
     * The code nearest to {@code x}: round to nearest, ties to even, saturating at ±max (see the class
     * comment for NaN and infinities).
     */
    public int encode(float x) {
        int sign = Float.floatToRawIntBits(x) < 0 ? signBit() : 0;
        if (Float.isNaN(x)) {
            if (!hasNaN()) throw new IllegalArgumentException("NaN has no " + this + " code");
            return sign | (signBit() - 1); // S.111..1
        }
        float a = Math.abs(x);
        if (a >= maxValue) return sign | maxCode; // saturation; also ±inf
        if (a == 0f) return sign;
        // the spacing of the format around a: 2^(e − M), e clamped to the smallest normal exponent 1 − bias
        int e = Math.max(Math.getExponent(a), 1 - bias);
        // a / 2^(e−M) is exact in double (a float scaled by a power of two); rint rounds half to even
        long q = (long) Math.rint(Math.scalb((double) a, mantissaBits - e));
        if (q >= 2L << mantissaBits) { // rounded up into the next binade
            q >>= 1;
            e++;
        }
        int code;
        if (q < 1L << mantissaBits) { // subnormal (only when e is the smallest normal exponent)
            code = (int) q;
        } else {
            code = (e + bias) << mantissaBits | (int) (q - (1L << mantissaBits));
        }
        if (code > maxCode) code = maxCode; // rounded above max: saturate (E4M3 would otherwise hit NaN)
        return sign | code;
    }

    /** {@code decode(encode(x))}: x rounded onto the format's grid. */
    public float round(float x) {
        return table[encode(x)];
    }

    // ---- byte packing ------------------------------------------------------------------------------

    /** Bytes for {@code count} codes: one per byte for FP8, two per byte for FP4. */
    public int packedLength(int count) {
        return bits() == 8 ? count : (count + 1) / 2;
    }

    /**
     * Packs codes into bytes. FP8: one code per byte, in order. FP4: two codes per byte, the low nibble first
     * — code {@code 2i} in bits 0..3 of byte i, code {@code 2i+1} in bits 4..7; an odd count leaves the last
     * high nibble 0. This is {@code store.BitPacking} with 4 bits, so stores and udfs read the same layout.
     */
    public byte[] pack(byte[] codes) {
        if (bits() == 8) return codes.clone();
        byte[] out = new byte[packedLength(codes.length)];
        for (int i = 0; i < codes.length; i++) {
            int c = codes[i] & 0xff;
            if (c > 0xf) throw new IllegalArgumentException("FP4 code " + c + " at index " + i + " is wider than 4 bits");
            out[i >> 1] |= (byte) (c << ((i & 1) * 4));
        }
        return out;
    }

    /** Inverse of {@link #pack}: {@code count} codes, one per byte. */
    public byte[] unpack(byte[] packed, int count) {
        if (packed.length < packedLength(count)) {
            throw new IllegalArgumentException(count + " " + this + " codes need " + packedLength(count)
                    + " bytes, got " + packed.length);
        }
        if (bits() == 8) return java.util.Arrays.copyOf(packed, count);
        byte[] out = new byte[count];
        for (int i = 0; i < count; i++) out[i] = (byte) (packed[i >> 1] >>> ((i & 1) * 4) & 0xf);
        return out;
    }
}
