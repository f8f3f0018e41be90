package io.blockquant.algo;

import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.TensorBackend;
import java.io.Serializable;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Per-channel ranges of some linear layers' inputs over calibration windows, as the OmniQuant reference's
 * {@code generate_act_scale_shift.py} takes them on the full-precision model: {@code max|x|} per channel (the
 * act_scales that LET's and SmoothQuant's scales start from) and the shift, an exponential moving average over
 * the windows in order of each window's {@code (max + min)/2} (the act_shifts: {@code s ← 0.99·s + 0.01·mid}, the
 * first window's mid as it is). Parts taken on separate tasks merge in window order to the same figures as one
 * pass, so the pipeline collects them where the full-precision stream is computed anyway.
 */
public final class InputRanges implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final double DECAY = 0.99;

    /**
     * One layer's channels. The shift is kept as {@code first} (the first window's mids), {@code count} windows and
     * {@code ema} = Σᵢ 0.01·0.99^(count−i)·midᵢ, so that the running average is {@code 0.99^count·first + ema}
     * and two parts merge exactly.
     */
    private record Channels(float[] absMax, float[] first, double[] ema, int count) implements Serializable {
        Channels then(Channels later) {
            if (count == 0) return later;
            if (later.count == 0) return this;
            float[] max = absMax.clone();
            for (int c = 0; c < max.length; c++) max[c] = Math.max(max[c], later.absMax[c]);
            double decay = Math.pow(DECAY, later.count);
            double[] e = new double[ema.length];
            for (int c = 0; c < e.length; c++) e[c] = decay * ema[c] + later.ema[c];
            return new Channels(max, first, e, count + later.count);
        }
    }

    private final Map<String, Channels> layers;

    private InputRanges(Map<String, Channels> layers) {
        this.layers = layers;
    }

    /**
     * The ranges of the inputs of {@code layerNames} (linears of {@code fp}) over {@code windows} (one {@code [seq,
     * hidden]} array each), {@code batch} windows a forward pass.
     */
    public static InputRanges of(DecoderBlock fp, Collection<String> layerNames, float[][] windows, int seq, int batch) {
        TensorBackend be = fp.linears().get(0).weight().backend();
        int hidden = windows.length == 0 ? 0 : windows[0].length / seq;
        Collector collector = new Collector(layerNames, seq);
        DecoderBlock tapped = collector.tap(fp);
        for (int w0 = 0; w0 < windows.length; w0 += batch) {
            int b = Math.min(batch, windows.length - w0);
            float[] x = BlockCalibrator.rows(windows, w0, b);
            be.scratchValue(() -> {
                tapped.forward(be.fromFloats(x, (long) b * seq, hidden), b, seq);
                return null;
            });
        }
        return collector.ranges();
    }

    /** Parts in window order as one (the parts' layers must be the same). */
    public static InputRanges merge(List<InputRanges> inWindowOrder) {
        Map<String, Channels> out = new LinkedHashMap<>();
        for (InputRanges part : inWindowOrder) {
            part.layers.forEach((name, ch) -> out.merge(name, ch, Channels::then));
        }
        return new InputRanges(out);
    }

    /** Per channel {@code max |x|} of {@code layer}'s input. */
    public float[] absMax(String layer) {
        return channels(layer).absMax.clone();
    }

    /** Per channel the moving average of the windows' {@code (max + min)/2} of {@code layer}'s input. */
    public float[] shift(String layer) {
        Channels ch = channels(layer);
        double decay = Math.pow(DECAY, ch.count);
        float[] s = new float[ch.ema.length];
        for (int c = 0; c < s.length; c++) s[c] = (float) (decay * ch.first[c] + ch.ema[c]);
        return s;
    }

    /** Windows seen. */
    public int windows() {
        return layers.isEmpty() ? 0 : layers.values().iterator().next().count;
    }

    private Channels channels(String layer) {
        Channels ch = layers.get(layer);
        if (ch == null) throw new IllegalArgumentException("no input ranges for layer " + layer + " (have " + layers.keySet() + ")");
        return ch;
    }

    /**
     * Gathers ranges from a block's forward passes: {@link #tap} gives the block with a hook on each named linear's
     * input; every pass adds its windows ({@code rows / seq} of them, in order).
     */
    public static final class Collector {
        private final Map<String, Channels> layers = new LinkedHashMap<>();
        private final int seq;

        public Collector(Collection<String> layerNames, int seq) {
            this.seq = seq;
            for (String n : layerNames) layers.put(n, new Channels(new float[0], new float[0], new double[0], 0));
        }

        public DecoderBlock tap(DecoderBlock fp) {
            for (String n : layers.keySet()) {
                if (fp.linears().stream().noneMatch(l -> l.name().equals(n))) {
                    throw new IllegalArgumentException("block has no linear " + n + " to take input ranges of");
                }
            }
            TensorBackend be = fp.linears().get(0).weight().backend();
            // the backend reduces each window's columns where the activations are: only [windows, 2·width] leaves it
            return fp.mapLinears(l -> layers.containsKey(l.name())
                    ? l.withInputTap(x -> add(l.name(), be.windowColumnRanges(x, seq).toFloats(), (int) x.shape()[1]))
                    : l);
        }

        /** Adds the windows of one pass from their per-window column maxima and minima ({@code [windows, 2·width]}). */
        private void add(String layer, float[] ranges, int width) {
            int windows = ranges.length / (2 * width);
            float[] absMax = new float[width], first = new float[width];
            double[] ema = new double[width];
            for (int w = 0; w < windows; w++) {
                int o = w * 2 * width;
                for (int c = 0; c < width; c++) {
                    float mx = ranges[o + c], mn = ranges[o + width + c];
                    absMax[c] = Math.max(absMax[c], Math.max(mx, -mn));
                    double mid = ((double) mx + mn) / 2;
                    ema[c] = DECAY * ema[c] + (1 - DECAY) * mid;
                    if (w == 0) first[c] = (mx + mn) / 2;
                }
            }
            layers.compute(layer, (n, before) -> before.then(new Channels(absMax, first, ema, windows)));
        }

        public InputRanges ranges() {
            return new InputRanges(new LinkedHashMap<>(layers));
        }
    }
}
