package io.blockquant.gpu;

import io.blockquant.algo.GptqConfig;
import io.blockquant.algo.GptqQuantizer;
import io.blockquant.algo.GptqQuantizer.PreparedHessian;
import io.blockquant.algo.QuantizedLinear;
import io.blockquant.algo.omniquant.BlockGraph;
import io.blockquant.algo.omniquant.HeapBlock;
import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.quant.FpFormat;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.TokenQuant;
import io.blockquant.schedule.BlockPlan;
import io.blockquant.schedule.BlockWork;
import io.blockquant.tensor.Activation;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.io.UncheckedIOException;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The computations the GPU check compares between backends, as one pure function of (backend, inputs):
 * every backend operation on small random tensors, one block of each family forward and backward (the
 * gradients OmniQuant trains on), OmniQuant's training ops (LWC, LET, AdamW) and one resident OmniQuant step per
 * family, GPTQ on one tiny-llama block, the INT/FP8/FP4 fake quantizers and the SVD.
 * {@link GpuCheckReference} runs it on the CPU backend and saves the outputs; {@link GpuCheck} runs it on the
 * CUDA backend and compares.
 */
public final class CheckCases {

    private CheckCases() {}

    public static final List<String> FAMILIES = List.of("llama", "opt", "falcon");
    /** Windows and tokens per window of the block checks. */
    public static final int BATCH = 2, SEQ = 64;
    /** GPTQ check: calibration windows (of the carried 512-token windows) on one tiny-llama block. */
    private static final int GPTQ_WINDOWS = 2;
    private static final GptqConfig GPTQ = GptqConfig.of(new IntQuantSpec(4, 0, false));

    public static byte[] serialize(ModelSpec spec) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
            out.writeObject(spec);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return bytes.toByteArray();
    }

    public static ModelSpec spec(ArrayBundle in, String name) {
        try (ObjectInputStream s = new ObjectInputStream(new ByteArrayInputStream(in.bytes("spec/" + name)))) {
            return (ModelSpec) s.readObject();
        } catch (IOException | ClassNotFoundException e) {
            throw new IllegalStateException("spec/" + name + ": " + e.getMessage(), e);
        }
    }

    /** The checkpoint tensors stored under {@code family/}. */
    public static InMemoryWeights weights(ArrayBundle in, String family) {
        Map<String, float[]> values = new HashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        String prefix = family + "/";
        for (String n : in.names()) {
            if (!n.startsWith(prefix)) continue;
            values.put(n.substring(prefix.length()), in.floats(n));
            shapes.put(n.substring(prefix.length()), in.shape(n));
        }
        return new InMemoryWeights(family + " (bundle)", values, shapes);
    }

    /**
     * Every output by name. {@code reference}, when given (the CPU outputs), supplies the Hessians GPTQ's
     * solver is fed, so that its Cholesky/inverse and column loop are compared on identical input.
     */
    public static Map<String, float[]> compute(TensorBackend be, ArrayBundle in, ArrayBundle reference) {
        Map<String, float[]> out = new LinkedHashMap<>();
        ops(be, in, out);
        for (String family : FAMILIES) block(be, in, family, out);
        training(be, in, out);
        for (String family : FAMILIES) omniQuant(be, in, family, out);
        quantizers(be, in, out);
        svd(be, in, out);
        largeHessian(be, out);
        headScores(be, in, out);
        gptq(be, in, reference, out);
        return out;
    }

    private static Tensor t(TensorBackend be, ArrayBundle in, String name) {
        return be.fromFloats(in.floats(name), in.shape(name));
    }

    // ---- single operations ------------------------------------------------------------------------

    private static void ops(TensorBackend be, ArrayBundle in, Map<String, float[]> out) {
        be.scratchValue(() -> {
            Tensor a = t(be, in, "ops/a"), a2 = t(be, in, "ops/a2"), b = t(be, in, "ops/b"), c = t(be, in, "ops/c");
            Tensor d = t(be, in, "ops/d"), row = t(be, in, "ops/row"), bias = t(be, in, "ops/bias");
            out.put("ops/matmul_nn", be.matmul(a, b, false, false).toFloats());
            out.put("ops/matmul_tn", be.matmul(a, c, true, false).toFloats());
            out.put("ops/matmul_nt", be.matmul(a, d, false, true).toFloats());
            out.put("ops/matmul_tt", be.matmul(b, a, true, true).toFloats());
            Tensor s = t(be, in, "ops/s"), bt = t(be, in, "ops/t"), u = t(be, in, "ops/u"), v = t(be, in, "ops/v");
            out.put("ops/bmm_nn", be.batchMatmul(s, bt, false, false).toFloats());
            out.put("ops/bmm_nt", be.batchMatmul(s, u, false, true).toFloats());
            out.put("ops/bmm_tn", be.batchMatmul(s, v, true, false).toFloats());
            out.put("ops/transpose", be.transpose(a).toFloats());
            out.put("ops/to_bytes from another thread", toBytesElsewhere(be, be.scale(a, 2f), 17, 5000));
            out.put("ops/reshape", be.reshape(a, 80, 96).toFloats());
            out.put("ops/rows", be.rows(a, 10, 50).toFloats());
            out.put("ops/columns", be.columns(a, 7, 61).toFloats());
            out.put("ops/select_columns", be.selectColumns(a, new int[] {5, 0, 79, 5, 33}).toFloats());
            out.put("ops/gather_rows", be.gatherRows(a, new int[] {3, 95, 3, 0, 41}).toFloats());
            out.put("ops/concat_columns", be.concatColumns(a, c).toFloats());
            out.put("ops/zeros", be.add(be.zeros(96, 80), a).toFloats());
            out.put("ops/add", be.add(a, a2).toFloats());
            out.put("ops/sub", be.sub(a, a2).toFloats());
            out.put("ops/mul", be.mul(a, a2).toFloats());
            out.put("ops/scale", be.scale(a, -0.37f).toFloats());
            out.put("ops/add_row", be.addRowVector(a, row).toFloats());
            out.put("ops/mul_row", be.mulRowVector(a, row).toFloats());
            Tensor wide = be.scale(a, 3f);
            for (Activation act : Activation.values()) {
                String n = act.name().toLowerCase(java.util.Locale.ROOT);
                out.put("ops/act_" + n, be.activate(wide, act).toFloats());
                out.put("ops/act_" + n + "_backward", be.activationBackward(wide, a2, act).toFloats());
            }
            // SwiGLU's fused product and its backward (the up operand a, the gradient a2)
            out.put("ops/gated_silu", be.gatedActivation(wide, a, Activation.SILU).toFloats());
            Tensor[] gated = be.gatedActivationBackward(wide, a, a2, Activation.SILU);
            out.put("ops/gated_silu_backward_gate", gated[0].toFloats());
            out.put("ops/gated_silu_backward_up", gated[1].toFloats());
            out.put("ops/sums", new float[] {(float) be.sum(a), (float) be.sumOfSquares(a)});
            double[] lse = be.rowLogSumExp(a);
            float[] lsef = new float[lse.length];
            for (int i = 0; i < lse.length; i++) lsef[i] = (float) lse[i];
            out.put("ops/row_logsumexp", lsef);
            int[] pick = new int[96];
            for (int i = 0; i < pick.length; i++) pick[i] = (i * 37) % 80;
            out.put("ops/pick_per_row", be.pickPerRow(a, pick));
            out.put("ops/row_absmax", be.rowAbsMax(a).toFloats());
            out.put("ops/column_sums", be.columnSums(a).toFloats());
            out.put("ops/window_column_ranges", be.windowColumnRanges(a, 24).toFloats()); // 4 windows of 24 rows
            out.put("ops/rmsnorm", be.rmsNorm(a, row, 1e-6f).toFloats());
            out.put("ops/layernorm", be.layerNorm(a, row, bias, 1e-5f).toFloats());
            out.put("ops/layernorm_nobias", be.layerNorm(a, row, null, 1e-5f).toFloats());
            Tensor[] rg = be.rmsNormBackward(a, row, 1e-6f, a2);
            out.put("ops/rmsnorm_dx", rg[0].toFloats());
            out.put("ops/rmsnorm_dw", rg[1].toFloats());
            Tensor[] lg = be.layerNormBackward(a, row, 1e-5f, a2);
            out.put("ops/layernorm_dx", lg[0].toFloats());
            out.put("ops/layernorm_dw", lg[1].toFloats());
            out.put("ops/layernorm_db", lg[2].toFloats());
            // heads: a is [batch 2 · seq 48, heads 4 · headDim 20]
            Tensor split = be.splitHeads(a, 2, 48, 4, 20);
            out.put("ops/split_heads", split.toFloats());
            out.put("ops/merge_heads", be.mergeHeads(split, 2, 48, 4, 20).toFloats());
            Tensor kv = be.splitHeads(be.columns(a, 0, 40), 2, 48, 2, 20);
            Tensor rep = be.repeatHeads(kv, 2, 2, 2);
            out.put("ops/repeat_heads", rep.toFloats());
            out.put("ops/sum_repeated_heads", be.sumRepeatedHeads(be.scale(rep, 1.5f), 2, 2, 2).toFloats());
            float[] invFreq = new float[8]; // 16 rotary dims of 20: the last 4 pass through
            for (int i = 0; i < invFreq.length; i++) invFreq[i] = (float) (1.0 / Math.pow(10000.0, 2.0 * i / 16));
            out.put("ops/rope", be.rope(split, invFreq).toFloats());
            out.put("ops/rope_backward", be.ropeBackward(split, invFreq).toFloats());
            Tensor scores = be.batchMatmul(s, s, false, true); // [6, 32, 32]
            Tensor probs = be.causalSoftmax(scores, 0.3f);
            out.put("ops/causal_softmax", probs.toFloats());
            out.put("ops/causal_softmax_backward", be.causalSoftmaxBackward(probs, be.scale(scores, 0.1f), 0.3f).toFloats());
            out.put("ops/fake_quant_tokens8", be.fakeQuantizeTokens(a, 8).toFloats());
            Tensor spd = t(be, in, "ops/spd"), rhs = t(be, in, "ops/rhs");
            Tensor l = be.cholesky(spd);
            out.put("ops/cholesky", l.toFloats());
            out.put("ops/solve_lower", be.solveTriangular(l, rhs, true).toFloats());
            out.put("ops/solve_upper", be.solveTriangular(be.transpose(l), rhs, false).toFloats());
            return null;
        });
    }

    // ---- one block of each family -----------------------------------------------------------------

    private static void block(TensorBackend be, ArrayBundle in, String family, Map<String, float[]> out) {
        ModelSpec spec = spec(in, family);
        DecoderBlock block = new ModelLoader(weights(in, family), spec, be).block(0);
        int h = spec.hiddenSize();
        float[] x = in.floats("x/" + family), target = in.floats("target/" + family);
        out.put(family + "/forward", be.scratchValue(() -> block.forward(be.fromFloats(x, (long) BATCH * SEQ, h), BATCH, SEQ).toFloats()));

        // forward and backward of the block-training graph (unquantized weights, no activation quantization)
        HeapBlock hb = HeapBlock.of(block);
        int n = hb.layers.size();
        float[][] ws = new float[n][], bs = new float[n][];
        for (int i = 0; i < n; i++) {
            ws[i] = hb.layers.get(i).w();
            bs[i] = hb.layers.get(i).b();
        }
        String g = family + "/grad/";
        be.scratchValue(() -> {
            BlockGraph.Result r = BlockGraph.run(hb.spec, hb.rms, hb.eps, hb.graphParams(be, hb.attnNorm, hb.mlpNorm, ws, bs),
                    be.fromFloats(x, (long) BATCH * SEQ, h), be.fromFloats(target, (long) BATCH * SEQ, h), BATCH, SEQ,
                    io.blockquant.quant.ActivationQuant.NONE, true, true);
            out.put(family + "/loss", new float[] {(float) r.loss()});
            out.put(family + "/train_output", r.output());
            putIf(out, g + "attn_norm_w", r.attnNormWeight());
            putIf(out, g + "attn_norm_b", r.attnNormBias());
            putIf(out, g + "mlp_norm_w", r.mlpNormWeight());
            putIf(out, g + "mlp_norm_b", r.mlpNormBias());
            for (BlockGraph.Proj p : BlockGraph.Proj.values()) {
                putIf(out, g + "w_" + p.name().toLowerCase(java.util.Locale.ROOT), r.weight()[p.ordinal()]);
                putIf(out, g + "b_" + p.name().toLowerCase(java.util.Locale.ROOT), r.bias()[p.ordinal()]);
            }
            return null;
        });
    }

    /**
     * Elements {@code [from, from + n)} of {@code t} read by {@link TensorBackend#toBytes} on a thread of its own, as the
     * work area's writers read a block's outputs (on a GPU: that thread's stream, after the computing thread's work).
     */
    private static float[] toBytesElsewhere(TensorBackend be, Tensor t, long from, int n) {
        be.synchronize();
        java.nio.ByteBuffer buf = java.nio.ByteBuffer.allocateDirect(n * Float.BYTES).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        Thread reader = new Thread(() -> {
            try {
                be.toBytes(t, from, buf);
            } finally {
                be.endTask();
            }
        }, "toBytes check");
        reader.start();
        try {
            reader.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
        float[] v = new float[n];
        buf.flip();
        buf.asFloatBuffer().get(v);
        return v;
    }

    private static void putIf(Map<String, float[]> out, String name, Tensor v) {
        if (v != null) out.put(name, v.toFloats());
    }

    // ---- OmniQuant's training ops (LWC, LET, AdamW) on seeded random inputs ------------------------------

    /** Seeded values in [lo, hi): the same on every machine (no input arrays needed). */
    private static float[] between(long seed, int n, double lo, double hi) {
        float[] u = new io.blockquant.bench.RandomBlocks.FastRandom(seed).uniform(n, 1.0 / Math.sqrt(3.0)); // [−1, 1)
        for (int i = 0; i < n; i++) u[i] = (float) (lo + (hi - lo) * (u[i] + 1) / 2);
        return u;
    }

    /**
     * Every backend op of OmniQuant's resident training step, forward and backward: LWC's clipped quantizer (eq. 2–3;
     * on activations with outlier channels and an all-zero row, per group of 64 and per channel), LET on a linear
     * (eq. 4–6; all vectors, and row scaling alone without a bias), the column scatter that reduces LET's per-column
     * gradients onto value channels, the reciprocal, AdamW (three steps, in place) and LET's scale truncation.
     */
    private static void training(TensorBackend be, ArrayBundle in, Map<String, float[]> out) {
        be.scratchValue(() -> {
            Tensor x = t(be, in, "quant/x");                                     // [64, 512]
            for (int group : new int[] {64, 512}) {
                int n = 64 * (512 / group);
                Tensor gamma = be.fromFloats(between(40 + group, n, 0.5, 4), n), beta = be.fromFloats(between(41 + group, n, 0.5, 4), n);
                String k = "train/lwc_w3g" + group;
                out.put(k, be.fakeQuantizeClipped(x, gamma, beta, group, 3).toFloats());
                Tensor[] g = be.fakeQuantizeClippedBackward(x, gamma, beta, group, 3,
                        be.fromFloats(between(42, 64 * 512, -1, 1), 64, 512));
                out.put(k + "_dw", g[0].toFloats());
                out.put(k + "_dgamma", g[1].toFloats());
                out.put(k + "_dbeta", g[2].toFloats());
            }
            Tensor w = t(be, in, "ops/a");                                        // [96, 80]
            Tensor bias = be.fromFloats(between(50, 96, -1, 1), 96);
            Tensor cs = be.fromFloats(between(51, 80, 0.5, 2), 80), cd = be.fromFloats(between(52, 80, -0.3, 0.3), 80);
            Tensor rf = be.fromFloats(between(53, 96, 0.5, 2), 96), rd = be.fromFloats(between(54, 96, -0.3, 0.3), 96);
            Tensor dW = t(be, in, "ops/a2"), dB = be.fromFloats(between(55, 96, -1, 1), 96);
            Tensor[] f = be.scaleShiftLinear(w, bias, cs, cd, rf, rd);
            out.put("train/let_w", f[0].toFloats());
            out.put("train/let_b", f[1].toFloats());
            Tensor[] gl = be.scaleShiftLinearBackward(w, bias, cs, cd, rf, rd, dW, dB);
            String[] names = {"dcol_scale", "dcol_shift", "drow_factor", "drow_shift"};
            for (int i = 0; i < names.length; i++) out.put("train/let_" + names[i], gl[i].toFloats());
            Tensor[] rows = be.scaleShiftLinear(w, null, null, null, rf, null);
            out.put("train/let_rows_w", rows[0].toFloats());
            out.put("train/let_rows_drow_factor", be.scaleShiftLinearBackward(w, null, null, null, rf, null, dW, null)[2].toFloats());
            int[] columns = new int[80];
            for (int j = 0; j < columns.length; j++) columns[j] = (j * 7) % 24;   // every one of 24 columns, several times
            out.put("train/scatter_add_columns", be.scatterAddColumns(w, columns, 24).toFloats());
            out.put("train/reciprocal", be.reciprocal(cs).toFloats());
            out.put("train/div", be.div(w, be.fromFloats(between(56, 96 * 80, 0.5, 2), 96, 80)).toFloats());

            Tensor p = be.scale(w, 1f), m = be.zeros(96, 80), v = be.zeros(96, 80);
            for (int step = 1; step <= 3; step++) {
                be.adamW(p, be.scale(dW, step == 2 ? -0.5f : 1f + step), m, v, step, 0.01, 0.9, 0.999, 1e-8, 0.1);
            }
            out.put("train/adamw_p", p.toFloats());
            out.put("train/adamw_m", m.toFloats());
            out.put("train/adamw_v", v.toFloats());
            Tensor small = be.scale(w, 0.02f);
            be.clampAwayFromZero(small, 1e-2f);
            out.put("train/clamp_away_from_zero", small.toFloats());
            return null;
        });
    }

    /**
     * One resident OmniQuant step's loss and gradients (LWC W4 g64 with clipping that cuts, LET with random scales,
     * shifts where the family has biases, the query/key scale and, in a gated MLP, the up→down scale; no activation quantization) on block 0 of each
     * family: the whole chain of the ops above with the block's backward.
     */
    private static void omniQuant(TensorBackend be, ArrayBundle in, String family, Map<String, float[]> out) {
        ModelSpec spec = spec(in, family);
        DecoderBlock block = new ModelLoader(weights(in, family), spec, be).block(0);
        HeapBlock hb = HeapBlock.of(block);
        io.blockquant.algo.omniquant.EquivalentTransform let = new io.blockquant.algo.omniquant.EquivalentTransform(hb, true, true,
                spec.family().descriptor().gatedMlp());
        io.blockquant.algo.omniquant.OmniQuantObjective obj = new io.blockquant.algo.omniquant.OmniQuantObjective(hb, let,
                new IntQuantSpec(4, 64, false), true, io.blockquant.quant.ActivationQuant.NONE);
        long seed = 60;
        for (float[] v : obj.lwcParameters()) System.arraycopy(between(seed++, v.length, 1, 4), 0, v, 0, v.length);
        for (float[] s : let.scales()) System.arraycopy(between(seed++, s.length, 0.7, 1.4), 0, s, 0, s.length);
        for (float[] d : new float[][] {let.attnShift, let.mlpShift, let.outShift}) {
            if (d != null) System.arraycopy(between(seed++, d.length, -0.1, 0.1), 0, d, 0, d.length);
        }
        io.blockquant.algo.omniquant.OmniQuantObjective.Evaluation ev = obj.evaluate(be, in.floats("x/" + family),
                in.floats("target/" + family), BATCH, SEQ, true, false);
        String k = "omniquant/" + family + "/";
        out.put(k + "loss", new float[] {(float) ev.loss()});
        for (int i = 0; i < ev.lwcGrads().size(); i++) {
            out.put(k + "grad/" + hb.layers.get(i / 2).name() + (i % 2 == 0 ? ".gamma" : ".beta"), ev.lwcGrads().get(i));
        }
        List<String> letNames = new java.util.ArrayList<>(let.named().keySet());
        for (int i = 0; i < ev.letGrads().size(); i++) out.put(k + "grad/" + letNames.get(i), ev.letGrads().get(i));
    }

    // ---- quantizers -------------------------------------------------------------------------------

    private static void quantizers(TensorBackend be, ArrayBundle in, Map<String, float[]> out) {
        be.scratchValue(() -> {
            Tensor x = t(be, in, "quant/x");
            for (FpFormat f : FpFormat.values()) {
                out.put("quant/tokens_" + f.name().toLowerCase(java.util.Locale.ROOT), be.fakeQuantizeTokensFp(x, f).toFloats());
            }
            out.put("quant/tokens_int8", be.fakeQuantizeTokens(x, 8).toFloats());
            out.put("quant/tokens_int4", be.fakeQuantizeTokens(x, 4).toFloats());
            out.put("quant/tokens_int4_asym", be.fakeQuantizeTokensAsym(x, 4).toFloats());
            out.put("quant/tokens_int8_asym", be.fakeQuantizeTokensAsym(x, 8).toFloats());
            // their backward (the reference's autograd: STE in range, each row's scale into its extremes)
            Tensor dy = t(be, in, "quant/dy");
            out.put("quant/tokens_int4_backward", be.fakeQuantizeTokensBackward(x, dy, TokenQuant.integer(4, false)).toFloats());
            out.put("quant/tokens_int4_asym_backward", be.fakeQuantizeTokensBackward(x, dy, TokenQuant.integer(4, true)).toFloats());
            out.put("quant/tokens_int6_asym_backward", be.fakeQuantizeTokensBackward(x, dy, TokenQuant.integer(6, true)).toFloats());
            out.put("quant/tokens_e4m3_backward", be.fakeQuantizeTokensBackward(x, dy, TokenQuant.fp8(FpFormat.E4M3)).toFloats());
            out.put("quant/weight_w4g64", be.fakeQuantizeWeight(x, new IntQuantSpec(4, 64, false)).toFloats());
            out.put("quant/weight_w3_channel", be.fakeQuantizeWeight(x, new IntQuantSpec(3, 0, false)).toFloats());
            out.put("quant/weight_w4g128_sym", be.fakeQuantizeWeight(x, new IntQuantSpec(4, 128, true)).toFloats());
            return null;
        });
    }

    // ---- SVD (LoRC) -------------------------------------------------------------------------------

    private static void svd(TensorBackend be, ArrayBundle in, Map<String, float[]> out) {
        for (String name : List.of("svd/tall", "svd/wide")) {
            be.scratchValue(() -> {
                Tensor[] usv = be.svd(t(be, in, name));
                out.put(name + "/s", usv[1].toFloats());
                // singular vectors are unique up to sign: compare the reconstruction U·diag(S)·Vᵀ
                out.put(name + "/reconstruction", be.matmul(be.mulRowVector(usv[0], usv[1]), usv[2], false, true).toFloats());
                return null;
            });
        }
    }

    /**
     * A Hessian of more than 2²⁸ elements (a Llama-2-70B down_proj's is 28672²): its damped diagonal in every row. A
     * kernel whose grid was capped at 2²⁸ threads once left the rows from 9362 on unscaled and undamped on the device,
     * and the Cholesky failed there. The CPU side gives the expected diagonal without building the 2 GB float64 sum.
     */
    private static void largeHessian(TensorBackend be, Map<String, float[]> out) {
        int n = 16448; // 16448² = 270.5M > 2²⁸
        double[] d = new double[n];
        for (int i = 0; i < n; i++) d[i] = 1 + i % 7;
        float[] diagonal = new float[n];
        if (be.onDevice()) {
            int[] identity = java.util.stream.IntStream.range(0, n).toArray();
            try (io.blockquant.tensor.GramSum sum = io.blockquant.algo.HessianAccumulator.on(be, n)) {
                Tensor h = sum.scaledWithDiagonal(be, 2.0, d, identity); // the sum is zero: the result is diag(d)
                diagonal = be.pickPerRow(h, identity);
                h.close();
            }
        } else {
            for (int i = 0; i < n; i++) diagonal[i] = (float) d[i];
        }
        out.put("hessian/damped diagonal past 2^28 elements", diagonal);
    }

    /**
     * {@code eval}'s output head in chunks of vocabulary rows ({@link io.blockquant.eval.HeadScores}): on a device each
     * chunk's log-sum-exp and the targets' logits are taken there, on the CPU from the logits on the heap in float64.
     */
    private static void headScores(TensorBackend be, ArrayBundle in, Map<String, float[]> out) {
        float[] head = in.floats("ops/a"); // a vocabulary of 96 rows of width 80, read 40 rows at a time: 3 chunks
        int[] targets = new int[72];
        for (int r = 0; r < targets.length; r++) targets[r] = (r * 37) % 96;
        io.blockquant.model.TensorRows rows = new io.blockquant.model.InMemoryWeights("head", Map.of("head", head),
                Map.of("head", new long[] {96, 80})).rows("head", 96, 80);
        io.blockquant.eval.HeadScores s = be.scratchValue(() -> io.blockquant.eval.HeadScores.score(t(be, in, "ops/d"), rows, 40, targets));
        float[] lse = new float[s.lse().length];
        for (int r = 0; r < lse.length; r++) lse[r] = (float) s.lse()[r];
        out.put("eval/head log-sum-exp in 3 chunks", lse);
        out.put("eval/head target logits in 3 chunks", s.picked());
    }

    // ---- GPTQ on one tiny-llama block ---------------------------------------------------------------

    private static void gptq(TensorBackend be, ArrayBundle in, ArrayBundle reference, Map<String, float[]> out) {
        ModelSpec spec = spec(in, "llama");
        ModelLoader loader = new ModelLoader(weights(in, "llama"), spec, be);
        DecoderBlock fp = loader.block(0);
        int seq = in.ints("tokens").length / 128;
        int[][] windows = windows(in.ints("tokens"), seq, 0, GPTQ_WINDOWS);
        float[] x = be.scratchValue(() -> loader.stem().embed(windows).toFloats());
        Map<String, float[]> done = new LinkedHashMap<>();
        List<List<String>> groups = BlockPlan.of(spec).groups();
        for (int gi = 0; gi < groups.size(); gi++) {
            List<String> group = groups.get(gi);
            // Hessians from the full-precision block (not true-sequential: each group's input is fixed)
            double[] own = BlockWork.hessian(fp, group.get(0), x, GPTQ_WINDOWS, seq).hessian();
            float[] ownF = toFloat(own);
            out.put("gptq/hessian" + gi, ownF);
            // the solver fed one Hessian on both backends: the CPU's, rounded to float32
            float[] shared = reference != null ? reference.floats("gptq/hessian" + gi) : ownF;
            PreparedHessian sharedPrep = PreparedHessian.of(be, toDouble(shared), GPTQ);
            out.put("gptq/hinv" + gi, sharedPrep.hinv());
            PreparedHessian ownPrep = PreparedHessian.of(be, own, GPTQ);
            for (String layer : group) {
                Tensor w = findWeight(fp, layer);
                QuantizedLinear q = GptqQuantizer.quantize(w, sharedPrep, GPTQ);
                out.put("gptq/weight/" + layer, q.dequantize());
                out.put("gptq/loss/" + layer, new float[] {(float) q.loss()});
                done.put(layer, GptqQuantizer.quantize(w, ownPrep, GPTQ).dequantize());
            }
        }
        // the whole pipeline on this backend (its own Hessians and factors): the quantized block's output
        DecoderBlock quantized = BlockWork.withWeights(fp, done);
        out.put("gptq/block_output", be.scratchValue(() ->
                quantized.forward(be.fromFloats(x, (long) GPTQ_WINDOWS * seq, spec.hiddenSize()), GPTQ_WINDOWS, seq).toFloats()));
    }

    static Tensor findWeight(DecoderBlock block, String module) {
        return block.linears().stream().filter(l -> l.name().equals(module)).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no layer " + module)).weight();
    }

    /** Windows {@code [from, from + count)} of {@code seq} tokens each from a flat token array. */
    private static int[][] windows(int[] tokens, int seq, int from, int count) {
        int[][] w = new int[count][];
        for (int i = 0; i < count; i++) w[i] = java.util.Arrays.copyOfRange(tokens, (from + i) * seq, (from + i + 1) * seq);
        return w;
    }

    static float[] toFloat(double[] v) {
        float[] f = new float[v.length];
        for (int i = 0; i < v.length; i++) f[i] = (float) v[i];
        return f;
    }

    static double[] toDouble(float[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < v.length; i++) d[i] = v[i];
        return d;
    }
}
