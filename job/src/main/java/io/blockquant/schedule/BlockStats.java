package io.blockquant.schedule;

import java.io.Serializable;
import java.util.HashMap;
import java.util.Map;

/**
 * Squared-error sums gathered over calibration partitions: per linear layer,
 * {@code ‖X·Wᵀ − X·Ŵᵀ‖²} and {@code ‖X·Wᵀ‖²} on the layer's inputs in the quantized stream, and for the
 * whole block {@code ‖block_q(X) − block_fp(X)‖²} and {@code ‖block_fp(X)‖²}. Sums, so partitions merge.
 */
public final class BlockStats implements Serializable {
    private static final long serialVersionUID = 1L;

    final Map<String, double[]> layers = new HashMap<>(); // module -> {err², ref², tokens}
    final double[] block = new double[2];

    void addLayer(String module, double err2, double ref2, long tokens) {
        double[] v = layers.computeIfAbsent(module, m -> new double[3]);
        v[0] += err2;
        v[1] += ref2;
        v[2] += tokens;
    }

    public BlockStats merge(BlockStats o) {
        BlockStats out = new BlockStats();
        for (BlockStats s : new BlockStats[] {this, o}) {
            s.layers.forEach((m, v) -> out.addLayer(m, v[0], v[1], (long) v[2]));
            out.block[0] += s.block[0];
            out.block[1] += s.block[1];
        }
        return out;
    }

    public double layerError(String module) {
        double[] v = layers.get(module);
        return v == null || v[1] == 0 ? Double.NaN : Math.sqrt(v[0] / v[1]);
    }

    public long layerTokens(String module) {
        double[] v = layers.get(module);
        return v == null ? 0 : (long) v[2];
    }

    public double blockError() {
        return block[1] == 0 ? Double.NaN : Math.sqrt(block[0] / block[1]);
    }
}
