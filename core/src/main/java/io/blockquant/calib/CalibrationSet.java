package io.blockquant.calib;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The calibration windows: {@code nsamples} windows of {@code seqlen} tokens drawn at random (seeded)
 * from the concatenated token stream of the calibration texts, as GPTQ's and OmniQuant's data loaders
 * draw them ({@code i = randint(0, n − seqlen − 1)}).
 */
public record CalibrationSet(List<int[]> windows, int seqlen, long seed, int sourceTokens) implements Serializable {

    public static CalibrationSet draw(int[] tokens, String source, int nsamples, int seqlen, long seed) {
        if (nsamples < 1) throw new IllegalArgumentException("--nsamples must be at least 1, got " + nsamples);
        if (seqlen < 2) throw new IllegalArgumentException("--seqlen must be at least 2, got " + seqlen);
        if (tokens.length < seqlen + 1) {
            throw new IllegalArgumentException("calibration text " + source + " has " + tokens.length
                    + " tokens, fewer than one window of " + seqlen + " (+1)");
        }
        if ((long) nsamples * seqlen > tokens.length) {
            throw new IllegalArgumentException("calibration text " + source + " has " + tokens.length + " tokens; "
                    + nsamples + " windows of " + seqlen + " need " + (long) nsamples * seqlen
                    + " (windows would repeat the text); lower --nsamples or --seqlen, or add text");
        }
        Random rnd = new Random(seed);
        List<int[]> windows = new ArrayList<>(nsamples);
        for (int s = 0; s < nsamples; s++) {
            int start = rnd.nextInt(tokens.length - seqlen);
            int[] w = new int[seqlen];
            System.arraycopy(tokens, start, w, 0, seqlen);
            windows.add(w);
        }
        return new CalibrationSet(List.copyOf(windows), seqlen, seed, tokens.length);
    }

    public int size() {
        return windows.size();
    }

    /**
     * CRC32 of every window's token ids in order, each as 4 little-endian bytes: printed by {@code quantize} so that
     * another implementation (the PyTorch baseline, {@code cluster/gpu/gptq_baseline.py}) can show it calibrates
     * on the same tokens.
     */
    public long fingerprint() {
        java.util.zip.CRC32 crc = new java.util.zip.CRC32();
        java.nio.ByteBuffer buf = java.nio.ByteBuffer.allocate(4).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int[] w : windows) {
            for (int t : w) {
                buf.clear();
                crc.update(buf.putInt(t).array());
            }
        }
        return crc.getValue();
    }
}
