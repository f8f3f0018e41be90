package io.blockquant.algo.omniquant;

import io.blockquant.algo.CalibratedBlock;
import io.blockquant.algo.QuantizedLinear;
import io.blockquant.algo.omniquant.HeapBlock.Layer;
import io.blockquant.algo.omniquant.HeapBlock.NormParams;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.tensor.TensorBackend;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The function OmniQuant minimizes for one block, {@code MSE(block_q(X; Θ), block_fp(X))} with
 * {@code Θ = (LWC γ, β per layer; LET vectors)}, and its gradient: LET (eq. 4–6) on the full-precision
 * parameters, LWC (eq. 2–3) on every transformed weight, the block's forward and backward
 * ({@link BlockGraph}), then the chain rule back through LWC and LET. Holds the learnable vectors on the heap;
 * training runs on {@link #resident} (every step's math as backend operations), {@link #fold} gives the final block.
 */
public final class OmniQuantObjective {

    final HeapBlock fp;
    final EquivalentTransform let;            // null: no LET
    final LearnableClipping[] clips;          // per stored layer
    final ActivationQuant acts;

    /** Symmetric per-token INT inputs of {@code abits} on the linears only (the W8A8 rule; 16: none). */
    public OmniQuantObjective(HeapBlock fp, EquivalentTransform let, IntQuantSpec weights, boolean learnableClipping, int abits) {
        this(fp, let, weights, learnableClipping, ActivationQuant.of(abits, null, false, false, 0, null));
    }

    public OmniQuantObjective(HeapBlock fp, EquivalentTransform let, IntQuantSpec weights, boolean learnableClipping,
                              ActivationQuant acts) {
        this.fp = fp;
        this.let = let;
        this.acts = acts;
        this.clips = new LearnableClipping[fp.layers.size()];
        for (int i = 0; i < clips.length; i++) {
            Layer l = fp.layers.get(i);
            clips[i] = new LearnableClipping(l.out(), l.in(), weights);
            if (!learnableClipping) { // σ(∞) = 1: plain min-max, and a zero gradient
                java.util.Arrays.fill(clips[i].gamma, Float.POSITIVE_INFINITY);
                java.util.Arrays.fill(clips[i].beta, Float.POSITIVE_INFINITY);
            }
        }
    }

    /** LWC vectors (γ then β per layer), in the order of {@link Evaluation#lwcGrads}. */
    public List<float[]> lwcParameters() {
        List<float[]> out = new ArrayList<>();
        for (LearnableClipping c : clips) {
            out.add(c.gamma);
            out.add(c.beta);
        }
        return out;
    }

    /**
     * Every learned vector by name ({@code <layer>.lwc_gamma}, {@code <layer>.lwc_beta}, {@code let.*}): what
     * {@link #restore} takes back, like the reference's {@code omni_parameters.pth}.
     */
    public Map<String, float[]> learned() {
        Map<String, float[]> out = new LinkedHashMap<>();
        for (int i = 0; i < clips.length; i++) {
            out.put(fp.layers.get(i).name() + ".lwc_gamma", clips[i].gamma);
            out.put(fp.layers.get(i).name() + ".lwc_beta", clips[i].beta);
        }
        if (let != null) out.putAll(let.named());
        return out;
    }

    /**
     * Sets every learned vector from {@code values} (as {@link #learned} names them), which must hold exactly
     * those names, each with its length and finite values; {@code source} names them in errors.
     */
    public void restore(Map<String, float[]> values, String source) {
        Map<String, float[]> own = learned();
        for (String name : values.keySet()) {
            if (!own.containsKey(name)) {
                throw new IllegalArgumentException(source + ": unexpected OmniQuant parameter '" + name + "' (this recipe learns "
                        + String.join(", ", own.keySet()) + ")");
            }
        }
        for (Map.Entry<String, float[]> e : own.entrySet()) {
            float[] v = values.get(e.getKey());
            if (v == null) throw new IllegalArgumentException(source + ": missing OmniQuant parameter '" + e.getKey() + "'");
            if (v.length != e.getValue().length) {
                throw new IllegalArgumentException(source + ": OmniQuant parameter '" + e.getKey() + "' has " + v.length
                        + " values, expected " + e.getValue().length);
            }
            boolean clipOff = e.getKey().endsWith(".lwc_gamma") || e.getKey().endsWith(".lwc_beta"); // +∞: no clipping
            for (int i = 0; i < v.length; i++) {
                if (Float.isNaN(v[i]) || (Float.isInfinite(v[i]) && !(clipOff && v[i] > 0))) {
                    throw new IllegalArgumentException(source + ": OmniQuant parameter '" + e.getKey() + "' holds " + v[i] + " at " + i);
                }
            }
            System.arraycopy(v, 0, e.getValue(), 0, v.length);
        }
    }

    public List<float[]> letParameters() {
        return let == null ? List.of() : let.parameters();
    }

    /** The loss of a batch, its output when asked for, and the gradients when asked for. */
    public record Evaluation(double loss, float[] output, List<float[]> lwcGrads, List<float[]> letGrads) {}

    private record Quantized(NormParams attn, NormParams mlp, float[][] b2, LearnableClipping.Quantized[] q) {}

    /** LET and LWC on the heap: the fold's (training runs the same math as backend operations, {@link ResidentObjective}). */
    private Quantized quantize() {
        int n = fp.layers.size();
        EquivalentTransform.Applied a = let == null ? null : let.apply();
        float[][] b2 = new float[n][];
        LearnableClipping.Quantized[] q = new LearnableClipping.Quantized[n];
        java.util.stream.IntStream.range(0, n).parallel().forEach(i -> {
            b2[i] = a == null ? fp.layers.get(i).b() : a.bias[i];
            q[i] = clips[i].quantize(a == null ? fp.layers.get(i).w() : a.weight[i]);
        });
        return new Quantized(a == null ? fp.attnNorm : a.attnNorm, a == null ? fp.mlpNorm : a.mlpNorm, b2, q);
    }

    /**
     * This objective resident on {@code be} for a training run: weights, learnable vectors and (with {@link AdamW}) the
     * optimizer's moments stay backend tensors; {@link ResidentObjective#download} brings the learned vectors back.
     */
    public ResidentObjective resident(TensorBackend be) {
        return new ResidentObjective(this, be);
    }

    /**
     * The loss of a batch, its output when asked for, and the gradients when asked for, on the heap: one
     * {@link ResidentObjective} step from the current vectors (the training loop keeps one resident instead).
     */
    public Evaluation evaluate(TensorBackend be, float[] x, float[] target, int batch, int seq, boolean gradients,
                               boolean keepOutput) {
        int h = fp.hidden();
        try (ResidentObjective r = resident(be)) {
            return be.scratchValue(() -> {
                ResidentObjective.Gradients g = r.evaluate(be.fromFloats(x, (long) batch * seq, h),
                        be.fromFloats(target, (long) batch * seq, h), batch, seq, gradients, keepOutput);
                if (!gradients) return new Evaluation(g.loss(), g.output(), null, null);
                int n = clips.length;
                float[][] dGamma = new float[n][], dBeta = new float[n][];
                for (int i = 0; i < n; i++) {
                    dGamma[i] = new float[clips[i].gamma.length];
                    dBeta[i] = new float[clips[i].beta.length];
                }
                r.perLayer(g.lwc(), true, dGamma);
                r.perLayer(g.lwc(), false, dBeta);
                List<float[]> lwcGrads = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    lwcGrads.add(dGamma[i]);
                    lwcGrads.add(dBeta[i]);
                }
                List<float[]> letGrads = new ArrayList<>();
                for (io.blockquant.tensor.Tensor t : g.let()) letGrads.add(t.toFloats());
                return new Evaluation(g.loss(), g.output(), lwcGrads, letGrads);
            });
        }
    }

    /**
     * The trained block folded into an ordinary one: LET moved into norms, weights and biases, every weight
     * replaced by its LWC-quantized value, activations quantized as training saw them; with the
     * stored form of each quantized weight by module name.
     */
    public CalibratedBlock fold(TensorBackend be) {
        Quantized s = quantize();
        Map<String, QuantizedLinear> layers = new LinkedHashMap<>();
        float[][] w = new float[fp.layers.size()][];
        for (int i = 0; i < w.length; i++) {
            QuantizedLinear ql = clips[i].export(s.q()[i]);
            layers.put(fp.layers.get(i).name(), ql);
            w[i] = ql.dequantize();
        }
        DecoderBlock block = fp.toBlock(be, s.attn(), s.mlp(), w, s.b2(), acts);
        return new CalibratedBlock(block, layers);
    }

    /** The LET-transformed block in full precision (no weight quantization): the same function as the original. */
    public DecoderBlock transformedFullPrecision(TensorBackend be) {
        EquivalentTransform.Applied a = let.apply();
        return fp.toBlock(be, a.attnNorm, a.mlpNorm, a.weight, a.bias, ActivationQuant.NONE);
    }
}
