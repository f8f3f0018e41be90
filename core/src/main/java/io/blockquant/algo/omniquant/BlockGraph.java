package io.blockquant.algo.omniquant;

import io.blockquant.model.ModelSpec;
import io.blockquant.nn.AttentionBackward;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.tensor.Activation;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;

/**
 * Forward and backward of one decoder block for block-wise training: given the effective weights of a step
 * (already transformed and fake-quantized), the block output, the MSE loss against the full-precision target
 * and the gradients of that loss w.r.t. every effective weight, bias and norm parameter. Activation fake
 * quantization (the linears' per-token inputs; attention's queries, keys and values) has the reference's
 * gradient: straight through (STE) inside the clamp range, and each token's dynamic scale's gradient into the
 * token's extreme elements ({@link TensorBackend#fakeQuantizeTokensBackward}). Written
 * against {@link TensorBackend} only; the gradients stay backend tensors (in the caller's scratch scope).
 *
 * <p>The pieces every family shares (norms, attention with its projections, the two MLP forms) are
 * {@link Ops}'; how a family wires them (residuals, parallel or sequential) is its
 * {@code FamilyDescriptor#trainingPass}. Falcon's fused query_key_value appears here as its three row subsets
 * Q, K, V (the caller splits and re-joins rows), so every family runs the same attention code.
 */
public final class BlockGraph {

    private BlockGraph() {}

    /** The projections of a block by role; GATE exists for gated MLPs only, O is o_proj/out_proj/dense. */
    public enum Proj { Q, K, V, O, GATE, UP, DOWN }

    /** Where a projection lives among a block's stored linears: the layer and its rows (null: all rows). */
    public record Slot(int layer, int[] rows) {
        public static Slot of(int layer) {
            return new Slot(layer, null);
        }
    }

    /**
     * One step's effective parameters. {@code weight[p]}/{@code bias[p]} by {@link Proj} ordinal (null when
     * absent); {@code mlpNormWeight == null} means the MLP reads the attention norm's output (Falcon-7B).
     */
    public record Params(Tensor attnNormWeight, Tensor attnNormBias, Tensor mlpNormWeight, Tensor mlpNormBias,
                         Tensor[] weight, Tensor[] bias) {}

    /**
     * The loss (mean squared error), the output on the heap when asked for, and, when asked for, the gradients by
     * the same slots as {@link Params}, as tensors of the backend.
     */
    public record Result(double loss, float[] output, Tensor attnNormWeight, Tensor attnNormBias,
                         Tensor mlpNormWeight, Tensor mlpNormBias, Tensor[] weight, Tensor[] bias) {}

    /** A piece's output and its backward: the gradient at its input from the gradient at its output. */
    public record Step(Tensor output, UnaryOperator<Tensor> gradient) {
        public Tensor backward(Tensor dOutput) {
            return gradient.apply(dOutput);
        }
    }

    /** A whole block's output and its backward, which leaves every parameter gradient in {@link Ops}. */
    public record Pass(Tensor output, Consumer<Tensor> backward) {}

    /**
     * @param rms     RMSNorm (Llama) or LayerNorm
     * @param acts    the activations' quantization: every linear's input, attention's Q, K, V
     * @param target  the full-precision block output, or null to only compute the output
     * Runs in the caller's scratch scope ({@link TensorBackend#scratchValue}): the gradient tensors live until it ends.
     */
    public static Result run(ModelSpec spec, boolean rms, float eps, Params p, Tensor x, Tensor target,
                             int batch, int seq, ActivationQuant acts, boolean backward, boolean keepOutput) {
        TensorBackend be = x.backend();
        return new Ops(spec, rms, eps, p, be, acts, batch, seq).go(x, target, backward, keepOutput);
    }

    /** The shared pieces of a block's graph over one step's {@link Params}; backwards record gradients here. */
    public static final class Ops {

        /**
         * The sequential pre-norm residual block, {@code h = x + attn(norm₁(x))}, {@code y = h + mlp(norm₂(h))},
         * with every linear's input quantized: Llama (gated MLP) and pre-LN OPT (plain MLP) differ only in {@code mlp}.
         */
        public Pass preNormResidual(Tensor x, java.util.function.Function<Tensor, Step> mlp) {
            TensorBackend be = x.backend();
            Step attnNorm = attnNorm(x);
            Step nq = quantIn(attnNorm.output());
            Step attn = attention(nq.output());
            Tensor h = be.add(x, attn.output());
            Step mlpNorm = mlpNorm(h);
            Step mq = quantIn(mlpNorm.output());
            Step m = mlp.apply(mq.output());
            return new Pass(be.add(h, m.output()), dy -> {
                Tensor dh = be.add(dy, mlpNorm.backward(mq.backward(m.backward(dy))));
                attnNorm.backward(nq.backward(attn.backward(dh)));
            });
        }
        private final ModelSpec spec;
        private final boolean rms;
        private final float eps;
        private final Params p;
        private final TensorBackend be;
        private final ActivationQuant acts;
        private final int batch, seq;
        private final Tensor[] dW = new Tensor[Proj.values().length];
        private final Tensor[] dB = new Tensor[Proj.values().length];
        private Tensor dAttnW, dAttnB, dMlpW, dMlpB;

        Ops(ModelSpec spec, boolean rms, float eps, Params p, TensorBackend be, ActivationQuant acts, int batch, int seq) {
            this.spec = spec;
            this.rms = rms;
            this.eps = eps;
            this.p = p;
            this.be = be;
            this.acts = acts;
            this.batch = batch;
            this.seq = seq;
        }

        public ModelSpec spec() {
            return spec;
        }

        /** Whether the block has a norm of its own in front of the MLP. */
        public boolean hasMlpNorm() {
            return p.mlpNormWeight() != null;
        }

        /**
         * The linears' dynamic per-token input quantization; its backward is the reference's autograd's (straight
         * through inside the clamp range, each row's scale's gradient into its extremes: {@link TensorBackend#fakeQuantizeTokensBackward}).
         */
        public Step quantIn(Tensor x) {
            io.blockquant.quant.TokenQuant q = acts.linearInputs();
            if (q == null) return new Step(x, dy -> dy);
            return new Step(be.fakeQuantizeTokens(x, q), dy -> be.fakeQuantizeTokensBackward(x, dy, q));
        }

        public Step attnNorm(Tensor x) {
            return new Step(norm(x, p.attnNormWeight(), p.attnNormBias()), dn -> {
                Tensor[] g = normBackward(x, p.attnNormWeight(), dn);
                dAttnW = g[1];
                if (!rms) dAttnB = g[2];
                return g[0];
            });
        }

        public Step mlpNorm(Tensor h) {
            return new Step(norm(h, p.mlpNormWeight(), p.mlpNormBias()), dm -> {
                Tensor[] g = normBackward(h, p.mlpNormWeight(), dm);
                dMlpW = g[1];
                if (!rms) dMlpB = g[2];
                return g[0];
            });
        }

        /** q, k, v from the (quantized) normed input, causal attention (Q, K, V quantized when asked), the output projection. */
        public Step attention(Tensor nq) {
            AttentionBackward.Cache att = AttentionBackward.forward(linear(nq, Proj.Q), linear(nq, Proj.K),
                    linear(nq, Proj.V), batch, seq, spec.numHeads(), spec.numKvHeads(), spec.headDim(), spec.invFreq(),
                    acts.attention());
            Step aq = quantIn(att.out());
            return new Step(linear(aq.output(), Proj.O), dO -> {
                Tensor[] dqkv = AttentionBackward.backward(att, aq.backward(linearBackward(aq.output(), dO, Proj.O)));
                return be.add(be.add(linearBackward(nq, dqkv[0], Proj.Q), linearBackward(nq, dqkv[1], Proj.K)),
                        linearBackward(nq, dqkv[2], Proj.V));
            });
        }

        /** {@code down(act(up(m)))} with the spec's activation. */
        public Step mlp(Tensor mq) {
            Tensor upPre = linear(mq, Proj.UP);
            Step actq = quantIn(be.activate(upPre, spec.activation()));
            return new Step(linear(actq.output(), Proj.DOWN), dy -> {
                Tensor dAct = actq.backward(linearBackward(actq.output(), dy, Proj.DOWN));
                return linearBackward(mq, be.activationBackward(upPre, dAct, spec.activation()), Proj.UP);
            });
        }

        /** SwiGLU: {@code down(silu(gate(m)) ⊙ up(m))}. */
        public Step gatedMlp(Tensor mq) {
            Tensor gatePre = linear(mq, Proj.GATE);
            Tensor upPre = linear(mq, Proj.UP);
            Step actq = quantIn(be.gatedActivation(gatePre, upPre, Activation.SILU));
            return new Step(linear(actq.output(), Proj.DOWN), dy -> {
                Tensor dAct = actq.backward(linearBackward(actq.output(), dy, Proj.DOWN));
                Tensor[] d = be.gatedActivationBackward(gatePre, upPre, dAct, Activation.SILU);
                return be.add(linearBackward(mq, d[0], Proj.GATE), linearBackward(mq, d[1], Proj.UP));
            });
        }

        private Tensor norm(Tensor x, Tensor w, Tensor b) {
            return rms ? be.rmsNorm(x, w, eps) : be.layerNorm(x, w, b, eps);
        }

        private Tensor[] normBackward(Tensor x, Tensor w, Tensor dy) {
            return rms ? be.rmsNormBackward(x, w, eps, dy) : be.layerNormBackward(x, w, eps, dy);
        }

        private Tensor linear(Tensor in, Proj proj) {
            Tensor y = be.matmul(in, p.weight()[proj.ordinal()], false, true);
            Tensor b = p.bias()[proj.ordinal()];
            return b == null ? y : be.addRowVector(y, b);
        }

        /** Weight and bias gradients of a linear from its (quantized) input; returns the input's gradient. */
        private Tensor linearBackward(Tensor in, Tensor dy, Proj proj) {
            dW[proj.ordinal()] = be.matmul(dy, in, true, false);
            if (p.bias()[proj.ordinal()] != null) dB[proj.ordinal()] = be.columnSums(dy);
            return be.matmul(dy, p.weight()[proj.ordinal()], false, false);
        }

        Result go(Tensor x, Tensor target, boolean backward, boolean keepOutput) {
            Pass pass = spec.family().descriptor().trainingPass(this, x);
            Tensor y = pass.output();
            double loss = 0;
            Tensor diff = null;
            if (target != null) {
                diff = be.sub(y, target);
                loss = be.sumOfSquares(diff) / y.length();
            }
            float[] out = keepOutput ? y.toFloats() : null;
            if (!backward) return new Result(loss, out, null, null, null, null, null, null);
            if (target == null) throw new IllegalArgumentException("the backward needs a target");
            pass.backward().accept(be.scale(diff, (float) (2.0 / y.length()))); // d mean((y − t)²) / dy
            return new Result(loss, out, dAttnW, dAttnB, dMlpW, dMlpB, dW, dB);
        }
    }
}
