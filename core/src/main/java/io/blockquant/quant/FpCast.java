package io.blockquant.quant;

/**
 * FP4 (E2M1) to FP8 (E4M3) by integer bit manipulation only (ZeroQuant-FP, section 4): with a power-of-two
 * scale factor {@code 2^shift} ({@link ScaleConstraint#M1}, or the group part of {@link ScaleConstraint#M2})
 * the FP8 weight {@code fp4 · 2^shift} is obtained by re-biasing the exponent field (+6 = 7 − 1, plus the
 * shift) and widening the mantissa (1 bit → 3 bits); FP4's one subnormal (0.5) becomes a normal FP8 value, and
 * results below E4M3's normal range become E4M3 subnormals when no bit is lost.
 */
public final class FpCast {

    private FpCast() {}

    /** The smallest shift at which every FP4 code is exactly an E4M3 value: 0.5·2^−8 = 2^−9, the smallest subnormal. */
    public static final int MIN_FP4_SHIFT = -8;

    /** The largest shift at which every FP4 code is exactly an E4M3 value: 6·2^6 = 384 ≤ 448 < 6·2^7. */
    public static final int MAX_FP4_SHIFT = 6;

    /**
     * The E4M3 code of {@code E2M1.decode(fp4Code) · 2^shift}.
     *
     * @throws ArithmeticException when that value is not exactly an E4M3 value (above 448, or bits lost
     *                             below 2^−6)
     */
    public static int fp4ToE4m3(int fp4Code, int shift) {
        int c = castOrMinusOne(fp4Code, shift);
        if (c < 0) {
            throw new ArithmeticException("FP4 code " + fp4Code + " · 2^" + shift + " is not an E4M3 value");
        }
        return c;
    }

    /** Whether {@link #fp4ToE4m3} succeeds. */
    public static boolean fp4FitsE4m3(int fp4Code, int shift) {
        return castOrMinusOne(fp4Code, shift) >= 0;
    }

    private static int castOrMinusOne(int fp4Code, int shift) {
        if (fp4Code < 0 || fp4Code > 0xF) throw new IllegalArgumentException("FP4 code " + fp4Code + " is outside 0..15");
        int sign = (fp4Code >>> 3) << 7;
        int e = fp4Code >>> 1 & 0b11, m = fp4Code & 1;
        if (e == 0 && m == 0) return sign; // ±0 stays ±0 at any shift
        // 1.f × 2^t: FP4 subnormal 0.1b × 2^0 normalizes to 1.0b × 2^−1; a normal has t = e − bias(1)
        int frac = e == 0 ? 0 : m;
        int t = (e == 0 ? -1 : e - 1) + shift;
        if (t >= -6) { // E4M3 normal: biased exponent t + 7, mantissa f00
            int biased = t + 7;
            if (biased > 15) return -1; // 2^9 and above: past 448 (biased 15 holds 256 and 384, both ≤ 448)
            return sign | biased << 3 | frac << 2;
        }
        // E4M3 subnormal: (2 + f)·2^(t−1) = mSub·2^−9, mSub = (2 + f)·2^(t + 8)
        int sig = 2 | frac, s = t + 8;
        if (s >= 0) return sign | sig << s; // s ≤ 1 here, so mSub ≤ 6 fits 3 bits
        if ((sig & ((1 << -s) - 1)) != 0 || -s >= 31) return -1; // bits would be lost
        int mSub = sig >>> -s;
        return mSub == 0 ? -1 : sign | mSub;
    }

    /**
     * The integer k with {@code scale = base · 2^k} exactly (M2: a group scale over its channel scale), from
     * the bit patterns: equal significands, exponent difference k.
     *
     * @throws ArithmeticException when the ratio is not a power of two
     */
    public static int powerOfTwoShift(float scale, float base) {
        if (!(scale > 0) || !(base > 0) || Float.isInfinite(scale) || Float.isInfinite(base)) {
            throw new ArithmeticException("scales must be positive and finite: " + scale + ", " + base);
        }
        // normalize subnormals by an exact power-of-two factor
        int adj = 0;
        if (scale < Float.MIN_NORMAL) { scale *= 0x1p30f; adj -= 30; }
        if (base < Float.MIN_NORMAL) { base *= 0x1p30f; adj += 30; }
        int sb = Float.floatToRawIntBits(scale), bb = Float.floatToRawIntBits(base);
        if ((sb & 0x7FFFFF) != (bb & 0x7FFFFF)) {
            throw new ArithmeticException(scale + " / " + base + " is not a power of two");
        }
        return (sb >>> 23) - (bb >>> 23) + adj;
    }
}
