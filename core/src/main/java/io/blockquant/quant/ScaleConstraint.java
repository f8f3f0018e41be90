package io.blockquant.quant;

/**
 * Constraints on FP weight scales that let an FP4 weight be cast to FP8 by shifting its exponent
 * (ZeroQuant-FP, section 4, "casting FP4 to FP8"): with activations in FP8 and weights in FP4, the W4A8 GEMM
 * runs on FP8 tensor cores only if each FP4 weight times its (group) scale can be turned into an FP8 weight
 * without a floating-point multiply. A power-of-two factor is an integer add to the exponent field
 * ({@link FpCast#fp4ToE4m3}).
 *
 * <ul>
 *   <li>{@link #NONE}: {@code s = absmax / max}.</li>
 *   <li>{@link #M1}: every scale becomes a power of two, {@code s = 2^⌈log2(absmax / max)⌉}: the whole
 *       scale folds into the FP8 exponent.</li>
 *   <li>{@link #M2}: the per-channel scale {@code s_c = rowAbsmax / max} stays a real number (applied to the
 *       GEMM's output row), and each group's scale is that channel scale times a power of two,
 *       {@code s_g = s_c · 2^k}, {@code k = ⌈log2((groupAbsmax / max) / s_c)⌉}: only {@code 2^k} folds into
 *       the FP8 exponent. Per channel (no groups) M2 is {@link #NONE}.</li>
 * </ul>
 *
 * <p>Rounding the exponent up (ceil) keeps every scale at or above the unconstrained one, so no weight is
 * pushed past the format's max by the constraint; at most it loses one bit of resolution.
 * For FP4 weights under M2, {@code k} is also kept at or above {@link FpCast#MIN_FP4_SHIFT} (−8): below it the
 * smallest FP4 magnitude 0.5·2^k would fall under E4M3's smallest subnormal 2^−9, and a larger scale is
 * always safe. A group that is all zero takes its channel's scale ({@code k = 0}); an all-zero channel or
 * group (NONE, M1) is scaled as if its absmax were 1, like {@link IntQuantizer}'s all-zero fallback.
 */
public enum ScaleConstraint {
    NONE, M1, M2;

    /** The unconstrained scale {@code absmax / max}, with absmax 0 read as 1 (any scale reproduces zeros). */
    public static float plainScale(float absMax, FpFormat format) {
        return (absMax == 0f ? 1f : absMax) / format.maxValue();
    }

    /**
     * The scale of one group under this constraint.
     *
     * @param groupAbsMax max |w| over the group (equal to {@code rowAbsMax} per channel)
     * @param rowAbsMax   max |w| over the whole output row (used by M2 only)
     */
    public float scale(float groupAbsMax, float rowAbsMax, FpFormat format) {
        switch (this) {
            case NONE:
                return plainScale(groupAbsMax, format);
            case M1:
                return Math.scalb(1f, ceilLog2(plainScale(groupAbsMax, format)));
            default: {
                float channel = plainScale(rowAbsMax, format);
                if (groupAbsMax == 0f) return channel;
                int k = ceilLog2((double) plainScale(groupAbsMax, format) / channel);
                if (format == FpFormat.E2M1) k = Math.max(k, FpCast.MIN_FP4_SHIFT);
                return Math.scalb(channel, k);
            }
        }
    }

    /**
     * {@code ⌈log2 x⌉} for {@code x > 0}, exactly: x is a power of two iff its significand bits are zero.
     * (For M2, x is a quotient of two floats in double: if the true quotient is not a power of two it is at
     * least 2^−24 away from one relatively, far beyond double rounding, so the ceiling is the true one.)
     */
    public static int ceilLog2(double x) {
        if (!(x > 0) || Double.isInfinite(x)) throw new IllegalArgumentException("log2 of " + x);
        int e = Math.getExponent(x);
        if (e < Double.MIN_EXPONENT) { // subnormal double: normalize first
            return ceilLog2(x * 0x1p60) - 60;
        }
        boolean power = (Double.doubleToRawLongBits(x) & 0xFFFFFFFFFFFFFL) == 0;
        return power ? e : e + 1;
    }
}
