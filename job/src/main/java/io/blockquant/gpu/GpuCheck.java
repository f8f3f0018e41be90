package io.blockquant.gpu;

import io.blockquant.tensor.Backends;
import io.blockquant.algo.OmniQuantConfig;
import io.blockquant.algo.omniquant.BlockGraph;
import io.blockquant.bench.BlockFlops;
import io.blockquant.bench.RandomBlocks.FastRandom;
import io.blockquant.cuda.CudaBackend;
import io.blockquant.model.Family;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.model.llama.LlamaBlock;
import io.blockquant.nn.Norm;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The self-contained GPU check (run by {@code cluster/gpu/check.sh} on a GPU machine with a jlink'ed Java
 * runtime and no Maven, Spark, Hadoop or ND4J): the CUDA backend against the CPU reference outputs of
 * {@link GpuCheckReference}, then timings — where an OmniQuant training step's time goes, and a Llama-7B-shaped
 * block forward/backward against the card's measured matrix-product rate. Whole quantize runs on a GPU are the
 * job's own ({@code cluster/gpu/stage-job.sh}, then {@code quantize --backend cuda}).
 *
 * <p>{@code GpuCheck DIR [phase...]} with DIR holding {@code check-inputs.bqa} and {@code check-reference.bqa};
 * phases {@code correctness omniquant bench} (default: all). Options: {@code -Dgpu.device=N} (default 0),
 * {@code -Dgpu.backend=cpu} (the CPU backend, via reflection: a dry run of this program on a machine with the
 * full classpath).
 */
public final class GpuCheck {

    private GpuCheck() {}

    /** Largest relative error (max |gpu − cpu| / max |cpu|) a float32 check may show. */
    static final double TOLERANCE = 1e-4;
    /**
     * GPTQ's layer loss relative to the CPU backend's; ‖gpu − cpu‖ / ‖cpu‖ of its weights (a flip moves a weight by one
     * step of the grid: 1 % of a 4-bit layer's weights flipped is about 3e-2 of its norm, against about 1e-1 for the
     * quantization error itself) and of the quantized block's output.
     */
    static final double GPTQ_LOSS = 1e-2, GPTQ_WEIGHT_NORM = 5e-2, GPTQ_OUTPUT_NORM = 1e-2;

    private static final PrintStream OUT = System.out;

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: GpuCheck DIR [correctness] [omniquant] [bench]");
            System.exit(2);
        }
        Path dir = Path.of(args[0]);
        List<String> phases = args.length > 1 ? Arrays.asList(args).subList(1, args.length)
                : List.of("correctness", "omniquant", "bench");
        TensorBackend be = Backends.forGpuCheck();
        OUT.println("backend: " + be.name() + (be instanceof CudaBackend cb ? " on " + cb.deviceName() : ""));
        long t0 = System.nanoTime();
        ArrayBundle inputs = ArrayBundle.read(dir.resolve("check-inputs.bqa"));
        OUT.printf(Locale.ROOT, "inputs: %d arrays read in %.1f s%n", inputs.names().size(), (System.nanoTime() - t0) / 1e9);
        boolean ok = true;
        for (String phase : phases) {
            OUT.println();
            OUT.println("== " + phase);
            switch (phase) {
                case "correctness" -> ok &= correctness(be, inputs, ArrayBundle.read(dir.resolve("check-reference.bqa")));
                case "omniquant" -> omniQuantStep(be, inputs);
                case "bench" -> bench(be, inputs);
                default -> throw new IllegalArgumentException("unknown phase " + phase);
            }
            OUT.flush();
        }
        OUT.println();
        OUT.println(ok ? "GPU CHECK PASSED" : "GPU CHECK FAILED");
        System.exit(ok ? 0 : 1);
    }

    private static void sync(TensorBackend be) {
        if (be instanceof CudaBackend cb) cb.synchronize();
    }

    // ---- correctness ------------------------------------------------------------------------------

    /**
     * max |a − r| / max |r|; the elements that differ by more than the tolerance are counted; {@code normError}:
     * ‖a − r‖ / ‖r‖ (Frobenius), the measure GPTQ's outputs are judged by.
     */
    record Comparison(double relError, int differing, int length, double normError) {
        Comparison(double relError, int differing, int length) {
            this(relError, differing, length, Double.POSITIVE_INFINITY);
        }

        static Comparison of(float[] actual, float[] reference) {
            return of(actual, reference, maxAbs(reference));
        }

        /** Against a given scale (for a tensor whose true value is zero and whose computed values are noise). */
        static Comparison of(float[] actual, float[] reference, double scale) {
            if (actual.length != reference.length) return new Comparison(Double.POSITIVE_INFINITY, actual.length, reference.length);
            double worst = 0, diff2 = 0, ref2 = 0;
            if (scale == 0) scale = 1;
            int differing = 0;
            for (int i = 0; i < actual.length; i++) {
                double d = Math.abs((double) actual[i] - reference[i]);
                if (!(d <= TOLERANCE * scale)) differing++;      // NaN counts
                worst = Math.max(worst, Double.isNaN(d) ? Double.POSITIVE_INFINITY : d);
                diff2 += d * d;
                ref2 += (double) reference[i] * reference[i];
            }
            double norm = Double.isNaN(diff2) ? Double.POSITIVE_INFINITY : ref2 == 0 ? Math.sqrt(diff2) : Math.sqrt(diff2 / ref2);
            return new Comparison(worst / scale, differing, actual.length, norm);
        }
    }

    static double maxAbs(float[] v) {
        double m = 0;
        for (float x : v) m = Math.max(m, Math.abs(x));
        return m;
    }

    /**
     * The key projection's bias has a zero true gradient (softmax is invariant to adding q·b_k to a whole row
     * of scores): both backends compute rounding noise (about 1e-11 against 1e-4 for the query bias), so it is
     * judged against the query bias gradient's scale.
     */
    static double scaleFor(String name, ArrayBundle reference) {
        if (name.endsWith("/grad/b_k")) {
            String q = name.substring(0, name.length() - 1) + "q";
            if (reference.has(q)) return maxAbs(reference.floats(q));
        }
        // Likewise the query/key scale without quantized queries and keys: row-wise weight quantization is equivariant
        // to scaling a row, so q/s·(k·s) leaves the loss unchanged and both backends compute noise; judged against
        // the attention norm's scale gradient.
        if (name.endsWith("/grad/let.qk_scale")) {
            String a = name.substring(0, name.length() - "qk_scale".length()) + "attn_scale";
            if (reference.has(a)) return maxAbs(reference.floats(a));
        }
        return maxAbs(reference.floats(name));
    }

    static boolean correctness(TensorBackend be, ArrayBundle inputs, ArrayBundle reference) {
        long t0 = System.nanoTime();
        Map<String, float[]> got = CheckCases.compute(be, inputs, reference);
        OUT.printf(Locale.ROOT, "computed %d outputs in %.1f s; relative error = max|gpu − cpu| / max|cpu|, tolerance %.0e%n",
                got.size(), (System.nanoTime() - t0) / 1e9, TOLERANCE);
        int failed = 0;
        Map<String, double[]> worstBySection = new LinkedHashMap<>();
        for (String name : reference.names()) {
            float[] g = got.get(name);
            Comparison c = g == null ? new Comparison(Double.POSITIVE_INFINITY, -1, 0) : Comparison.of(g, reference.floats(name), scaleFor(name, reference));
            // GPTQ's rounding is a discontinuous function of its float inputs: a weight within an ulp of a rounding
            // boundary rounds the other way when the inverse Hessian's factor differs in its last bits (cuSOLVER's
            // and LAPACK's float32 factors do), and the error feedback carries the flip along that row's later
            // columns. Elementwise agreement would need float64 factors on both sides and still not be guaranteed,
            // so GPTQ's outputs are judged by what the method promises: the layer loss (the objective, continuous in
            // its inputs) within GPTQ_LOSS, and the weights and the quantized block's output within GPTQ_WEIGHT_NORM and
            // GPTQ_OUTPUT_NORM in Frobenius norm (an H200 measured 2.3e-5 in the factor, 9.6e-4 in a loss, 0.12 % of a layer's weights
            // flipped); the flips are counted and shown.
            String verdict;
            boolean pass;
            if (name.startsWith("gptq/loss/")) {
                pass = c.relError() <= GPTQ_LOSS;
                verdict = "loss within " + GPTQ_LOSS;
            } else if (name.startsWith("gptq/weight/") || name.startsWith("gptq/block_output")) {
                double bound = name.startsWith("gptq/weight/") ? GPTQ_WEIGHT_NORM : GPTQ_OUTPUT_NORM;
                pass = c.normError() <= bound;
                verdict = String.format(Locale.ROOT, "‖Δ‖/‖ref‖ %.1e ≤ %.0e", c.normError(), bound);
            } else {
                pass = c.relError() <= TOLERANCE;
                verdict = "";
            }
            if (!pass) failed++;
            OUT.printf(Locale.ROOT, "  %-40s rel.err %9.2e  differing %6d of %8d  %s%n", name, c.relError(), c.differing(), c.length(),
                    (pass ? "PASS" : "FAIL") + (verdict.isEmpty() ? "" : " (" + verdict + ")"));
            String section = name.contains("/") ? name.substring(0, name.indexOf('/')) : name;
            double[] w = worstBySection.computeIfAbsent(section, k -> new double[2]);
            w[0] = Math.max(w[0], c.relError());
            w[1] += c.differing();
        }
        OUT.println("  worst relative error by section:");
        worstBySection.forEach((s, w) -> OUT.printf(Locale.ROOT, "    %-8s %9.2e  (%d elements beyond tolerance)%n", s, w[0], (long) w[1]));
        OUT.println(failed == 0 ? "correctness: all " + reference.names().size() + " checks passed" : "correctness: " + failed + " checks FAILED");
        return failed == 0;
    }

    // ---- one OmniQuant training step on tiny-llama's block 0 ------------------------------------------

    /**
     * Where a training step's time goes: one resident step (LET and LWC, the block's forward and backward, the chain
     * rule back and AdamW, all on the backend; the window uploaded, the loss read back) of LWC W3A16 and of LWC+LET
     * W3A16 on a full window, and on a 4-token window, where the backend's arithmetic is negligible and what remains
     * is per-call costs.
     */
    static void omniQuantStep(TensorBackend be, ArrayBundle in) {
        ModelSpec spec = CheckCases.spec(in, "llama");
        DecoderBlock fp = new ModelLoader(CheckCases.weights(in, "llama"), spec, be).block(0);
        OmniQuantConfig cfg = OmniQuantConfig.of(Family.LLAMA, 3, 0, 16);
        int h = spec.hiddenSize();
        for (boolean withLet : new boolean[] {false, true}) {
            io.blockquant.algo.omniquant.HeapBlock hb = io.blockquant.algo.omniquant.HeapBlock.of(fp);
            io.blockquant.algo.omniquant.OmniQuantObjective objective = new io.blockquant.algo.omniquant.OmniQuantObjective(hb,
                    withLet ? new io.blockquant.algo.omniquant.EquivalentTransform(hb, false, false, false) : null, cfg.weightSpec(), true, 16);
            OUT.println("OmniQuant " + (withLet ? "LWC+LET" : "LWC") + " W3A16, tiny-llama block 0");
            for (int tokens : new int[] {(int) in.shape("tokens")[1], 4}) {
                float[] x = new FastRandom(21).uniform((long) tokens * h, 1.0), t = new FastRandom(22).uniform((long) tokens * h, 1.0);
                double s = residentStepSeconds(be, objective, x, t, 1, tokens, 20, 50);
                OUT.printf(Locale.ROOT, "  one step (loss, gradients, AdamW, on the backend) on a window of %d tokens: %.2f ms%n",
                        tokens, s * 1e3);
            }
        }
    }

    /**
     * Median seconds of one training step as {@code OmniQuantCalibrator} runs it: the objective resident on the
     * backend, a step = the windows uploaded, LET, LWC, forward, backward, the chain rule back, AdamW, the loss read.
     */
    static double residentStepSeconds(TensorBackend be, io.blockquant.algo.omniquant.OmniQuantObjective objective, float[] x,
                                      float[] t, int batch, int seq, int warmups, int repeats) {
        int h = (int) (x.length / ((long) batch * seq));
        // the window stays on the device, as training keeps a block's windows there
        try (io.blockquant.algo.omniquant.ResidentObjective r = objective.resident(be);
             io.blockquant.algo.omniquant.AdamW opt = r.optimizer(true, 1e-3, 1e-3, 0);
             Tensor xs = be.fromFloats(x, (long) batch * seq, h);
             Tensor ts = be.fromFloats(t, (long) batch * seq, h)) {
            return time(be, warmups, repeats, () -> be.scratchValue(() -> r.step(xs, ts, batch, seq, opt)));
        }
    }

    // ---- Llama-7B-shaped block --------------------------------------------------------------------

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }

    private static double time(TensorBackend be, int warmups, int repeats, Runnable work) {
        for (int i = 0; i < warmups; i++) work.run();
        sync(be);
        double[] t = new double[repeats];
        for (int i = 0; i < repeats; i++) {
            long t0 = System.nanoTime();
            work.run();
            sync(be);
            t[i] = (System.nanoTime() - t0) / 1e9;
        }
        return median(t);
    }

    private static double gemmRate(TensorBackend be, int m, int k, int n) {
        double[] rate = new double[1];
        be.scratchValue(() -> {
            Tensor a = be.fromFloats(new FastRandom(1).uniform((long) m * k, 1.0), m, k);
            Tensor w = be.fromFloats(new FastRandom(2).uniform((long) n * k, 1.0), n, k);
            double s = time(be, 3, 10, () -> be.matmul(a, w, false, true).close());
            rate[0] = 2.0 * m * k * n / s / 1e9;
            return null;
        });
        return rate[0];
    }

    static void bench(TensorBackend be, ArrayBundle in) {
        ModelSpec spec = CheckCases.spec(in, "llama7b");
        int seq = 2048, batch = 1, h = spec.hiddenSize();
        CudaBackend cuda = be instanceof CudaBackend cb ? cb : null;
        for (boolean tf32 : cuda == null ? new boolean[] {false} : new boolean[] {false, true}) {
            if (cuda != null) cuda.useTf32(tf32);
            String mode = tf32 ? "TF32" : "FP32";
            double sq = gemmRate(be, 4096, 4096, 4096);
            double lin = gemmRate(be, 2048, 4096, 4096);
            double mlp = gemmRate(be, 2048, 4096, 11008);
            OUT.printf(Locale.ROOT, "matrix products (%s, cuBLAS through the backend, median of 10): 4096³ %.1f TFLOP/s; "
                    + "x[2048,4096]·Wᵀ[4096,4096] %.1f; x[2048,4096]·Wᵀ[11008,4096] %.1f%n", mode, sq / 1e3, lin / 1e3, mlp / 1e3);
            double ceiling = Math.max(sq, Math.max(lin, mlp));

            LlamaBlock block = randomLlama(be, spec, 4);
            float[] xs = new FastRandom(5).uniform((long) seq * h, 1.0);
            Tensor x = be.fromFloats(xs, (long) batch * seq, h);
            double fwd = time(be, 1, 5, () -> be.scratchValue(() -> block.forward(x, batch, seq).shape()));
            double flop = BlockFlops.llamaForward(spec, batch, seq);
            OUT.printf(Locale.ROOT, "7B-shaped block forward (%s), %d×%d tokens: %.1f ms, %.1f TFLOP/s = %.0f %% of the best measured product rate%n",
                    mode, batch, seq, fwd * 1e3, flop / fwd / 1e12, 100 * flop / fwd / 1e9 / ceiling);
            Tensor target = be.scratch(() -> be.add(block.forward(x, batch, seq), be.scale(x, 0.01f)));
            BlockGraph.Params p = new BlockGraph.Params(block.attnNorm().weight(), null, block.mlpNorm().weight(), null,
                    new Tensor[] {block.q().weight(), block.k().weight(), block.v().weight(), block.o().weight(),
                        block.gate().weight(), block.up().weight(), block.down().weight()},
                    new Tensor[BlockGraph.Proj.values().length]);
            double fb = time(be, 1, 3, () -> be.scratchValue(() -> BlockGraph.run(spec, true, spec.normEps(), p, x, target, batch,
                    seq, io.blockquant.quant.ActivationQuant.NONE, true, false).loss()));
            OUT.printf(Locale.ROOT, "7B-shaped block forward+backward (%s, gradients of every weight, left on the device): %.1f ms, "
                    + "%.1f TFLOP/s (FLOPs = 3× forward) = %.0f %% of the best measured product rate%n",
                    mode, fb * 1e3, 3 * flop / fb / 1e12, 100 * 3 * flop / fb / 1e9 / ceiling);
            // the whole OmniQuant step as training runs it (LWC W4 g128 + LET, AdamW), resident on the backend
            io.blockquant.algo.omniquant.HeapBlock hb = io.blockquant.algo.omniquant.HeapBlock.of(block);
            io.blockquant.algo.omniquant.OmniQuantObjective objective = new io.blockquant.algo.omniquant.OmniQuantObjective(hb,
                    new io.blockquant.algo.omniquant.EquivalentTransform(hb, false, false, false),
                    new io.blockquant.quant.IntQuantSpec(4, 128, false), true, 16);
            float[] ts = target.toFloats();
            double step = residentStepSeconds(be, objective, xs, ts, batch, seq, 1, 3);
            OUT.printf(Locale.ROOT, "7B-shaped OmniQuant step (%s, LWC W4 g128 + LET, AdamW; parameters, gradients and moments on the "
                    + "device): %.1f ms, %.1f TFLOP/s (FLOPs = 3× forward) = %.0f %% of the best measured product rate%n",
                    mode, step * 1e3, 3 * flop / step / 1e12, 100 * 3 * flop / step / 1e9 / ceiling);
            for (Linear l : block.linears()) l.weight().close();
            x.close();
            target.close();
        }
        if (cuda != null) cuda.useTf32(false);
    }

    /** A Llama block of {@code spec}'s shape, weights uniform with standard deviation 0.02, norm weights 1. */
    static LlamaBlock randomLlama(TensorBackend be, ModelSpec spec, long seed) {
        FastRandom rnd = new FastRandom(seed);
        int h = spec.hiddenSize(), q = spec.numHeads() * spec.headDim(), kv = spec.numKvHeads() * spec.headDim();
        int ff = spec.intermediateSize();
        float[] ones = new float[h];
        Arrays.fill(ones, 1f);
        java.util.function.BiFunction<String, int[], Linear> lin = (name, shape) ->
                new Linear(name, be.fromFloats(rnd.uniform((long) shape[0] * shape[1], 0.02), shape[0], shape[1]), null);
        return new LlamaBlock(spec, Norm.rms(be.fromFloats(ones, h), spec.normEps()),
                lin.apply("self_attn.q_proj", new int[] {q, h}), lin.apply("self_attn.k_proj", new int[] {kv, h}),
                lin.apply("self_attn.v_proj", new int[] {kv, h}), lin.apply("self_attn.o_proj", new int[] {h, q}),
                Norm.rms(be.fromFloats(ones.clone(), h), spec.normEps()),
                lin.apply("mlp.gate_proj", new int[] {ff, h}), lin.apply("mlp.up_proj", new int[] {ff, h}),
                lin.apply("mlp.down_proj", new int[] {h, ff}));
    }
}
