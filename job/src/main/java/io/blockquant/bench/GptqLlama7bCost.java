package io.blockquant.bench;

import io.blockquant.algo.GptqConfig;
import io.blockquant.algo.GptqQuantizer;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * What GPTQ W4 g64 costs on one Llama-7B-shaped block, and so on a 32-block model: the Hessians measured on
 * a few windows and extrapolated to the calibration set, the column loop of each layer measured at a shape
 * shrunk by K in both dimensions and extrapolated by K³ (a full-size run takes about an hour).
 */
public final class GptqLlama7bCost {

    private static final String SECTION = "3. GPTQ W4 g64 on one 7B-shaped block";

    /** A 7B block's linear layers, {@code [out, in]}, in true-sequential order. */
    private static final String[] LAYERS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

    private final TensorBackend be;
    private final BenchSettings settings;
    private final BenchReport report;
    private final int hessianWindows, calibWindows, shrinkColumnLoop;

    /**
     * {@code hessianWindows}: windows of 2048 tokens the Hessians are measured on; {@code calibWindows}: the
     * windows a 7B run uses; {@code shrinkColumnLoop}: K, which must divide 64 (groups of 64/K columns keep
     * the full shape's groups per row).
     */
    public GptqLlama7bCost(TensorBackend be, BenchSettings settings, BenchReport report, int hessianWindows, int calibWindows,
                           int shrinkColumnLoop) {
        if (hessianWindows < 1 || calibWindows < 1 || shrinkColumnLoop < 1) {
            throw new IllegalArgumentException("--hessian-windows, --calib-windows and --gptq-shrink must be ≥ 1");
        }
        if (64 % shrinkColumnLoop != 0) {
            throw new IllegalArgumentException("--gptq-shrink must divide 64 (groups of 64/K columns), got " + shrinkColumnLoop);
        }
        this.be = be;
        this.settings = settings;
        this.report = report;
        this.hessianWindows = hessianWindows;
        this.calibWindows = calibWindows;
        this.shrinkColumnLoop = shrinkColumnLoop;
    }

    private static int[] layerShape(String layer) {
        switch (layer) {
            case "gate_proj": case "up_proj": return new int[] {11008, 4096};
            case "down_proj": return new int[] {4096, 11008};
            default: return new int[] {4096, 4096};
        }
    }

    public void run() {
        String s = SECTION;
        boolean quick = settings.quick();
        int shrink = settings.shrink();
        CpuBlas.useThreads(settings.threads());
        int seq = 2048 / shrink;
        int tokens = hessianWindows * seq;
        // Hessians per block: the groups (q,k,v), (o), (gate,up) read 4096-wide inputs, (down) an 11008-wide one
        Map<Integer, Double> hessianSeconds = new LinkedHashMap<>();
        for (int width : new int[] {4096 / shrink, 11008 / shrink}) {
            Tensor x = RandomBlocks.activations(be, 7, tokens, width);
            HessianAccumulator acc = new HessianAccumulator(width);
            Timing t = Timing.measure(0, 1, () -> acc.add(x));
            x.close();
            hessianSeconds.put(width, t.medianSeconds());
            double flop = 2.0 * tokens * width * width;
            report.row(s, "Hessian XᵀX, width " + width + ", " + tokens + " tokens", String.format(Locale.ROOT, "%.2f s", t.medianSeconds()),
                    String.format(Locale.ROOT, "%.1f GFLOP/s (matmul + float64 running sum on the heap)", t.gflops(flop)));
        }
        double perBlockMeasured = 3 * hessianSeconds.get(4096 / shrink) + hessianSeconds.get(11008 / shrink);
        double hessianScale = (double) calibWindows * 2048 / tokens * (quick ? (double) shrink * shrink : 1);
        double perBlockHessian = perBlockMeasured * hessianScale;
        report.row(s, "Hessians of one block (3× width 4096 + 1× 11008), measured", String.format(Locale.ROOT, "%.2f s", perBlockMeasured),
                hessianWindows + "×" + seq + " tokens");
        report.row(s, "  extrapolated to " + calibWindows + "×2048 tokens", String.format(Locale.ROOT, "%.1f s", perBlockHessian),
                "assumes time linear in tokens (one XᵀX per batch)" + (quick ? ", and × " + shrink + "² for the shrunk widths" : "")
                        + "; excludes re-running the block prefix per group (section 2)");
        report.put("hessian_tokens_measured", tokens);
        report.put("hessian_block_seconds_measured", perBlockMeasured);
        report.put("hessian_block_seconds_" + calibWindows + "x2048", perBlockHessian);

        // the column loop, one layer at a time, each shape shrunk by k in both dimensions
        int k = shrinkColumnLoop;
        // group 64/k keeps the full shape's groups per row (11008/k is no multiple of 64 for k > 4)
        int group = Math.max(1, 64 / k);
        GptqConfig cfg = GptqConfig.of(new IntQuantSpec(4, group, false));
        Map<String, Double> measuredByShape = new LinkedHashMap<>(), factorByShape = new LinkedHashMap<>();
        Map<String, Object> layerJson = new LinkedHashMap<>();
        double blockLoop = 0;
        for (String layer : LAYERS) {
            int[] full = layerShape(layer);
            int rows = full[0] / k, cols = full[1] / k;
            String key = rows + "×" + cols;
            if (!measuredByShape.containsKey(key)) {
                double[] h = randomHessian(cols);
                Tensor w = RandomBlocks.activations(be, 8, rows, cols);
                float[] wScaled = w.toFloats();
                for (int i = 0; i < wScaled.length; i++) wScaled[i] *= 0.02f;
                Tensor weight = be.fromFloats(wScaled, rows, cols);
                measuredByShape.put(key, Timing.measure(0, 1, () -> GptqQuantizer.quantize(weight, h, cfg)).medianSeconds());
                factorByShape.put(key, Timing.measure(0, 1, () -> GptqQuantizer.PreparedHessian.of(be, h, cfg)).medianSeconds());
            }
            double measured = measuredByShape.get(key), factorShare = factorByShape.get(key) / measured;
            double extrapolated = measured * k * k * k;
            blockLoop += extrapolated;
            layerJson.put(layer, Math.round(extrapolated * 10) / 10.0);
            report.row(s, "column loop " + layer + " " + full[0] + "×" + full[1], String.format(Locale.ROOT, "%.0f s", extrapolated),
                    String.format(Locale.ROOT, "measured %.2f s at %s g%d, × %d³; H⁻¹ factor %.0f %% of it", measured, key, group, k, 100 * Math.min(1, factorShare)));
        }
        // how well n³ holds: the H⁻¹ factor at two sizes (the Hessians made outside the timing)
        int n1 = Math.max(64, 4096 / k), n2 = 2 * n1;
        double[] h1 = randomHessian(n1), h2 = randomHessian(n2);
        double f1 = Timing.measure(0, 1, () -> GptqQuantizer.PreparedHessian.of(be, h1, cfg)).medianSeconds();
        double f2 = Timing.measure(0, 1, () -> GptqQuantizer.PreparedHessian.of(be, h2, cfg)).medianSeconds();
        double exponent = Math.log(f2 / f1) / Math.log(2);
        report.row(s, "H⁻¹ factor (Cholesky, triangular inverse, matmul, Cholesky) " + n1 + " → " + n2, String.format(Locale.ROOT, "n^%.2f", exponent),
                String.format(Locale.ROOT, "%.2f s → %.2f s; the extrapolation assumes n³", f1, f2));
        report.row(s, "column loops of one block, extrapolated", String.format(Locale.ROOT, "%.0f s", blockLoop),
                "layers one after another; the job runs a group's layers as parallel tasks (÷ up to the cores)");
        double block = blockLoop + perBlockHessian;
        double model7b = 32 * block;
        report.row(s, "32-block 7B model, GPTQ only, extrapolated", String.format(Locale.ROOT, "%.1f h", model7b / 3600),
                "32 × (Hessians + column loops); assumes blocks cost alike, no Spark overhead, one layer at a time");
        report.put("gptq_layer_seconds_est", layerJson);
        report.put("gptq_block_column_loops_seconds_est", blockLoop);
        report.put("gptq_inverse_factor_exponent", exponent);
        report.put("gptq_7b_model_hours_est", model7b / 3600);
    }

    /** A well-conditioned Hessian {@code 2/n·XᵀX} of random inputs, n = 2·width tokens (at least 256). */
    private double[] randomHessian(int width) {
        HessianAccumulator acc = new HessianAccumulator(width);
        Tensor x = RandomBlocks.activations(be, 9, Math.max(256, 2 * width), width);
        acc.add(x);
        x.close();
        return acc.hessian();
    }
}
