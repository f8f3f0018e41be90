package io.blockquant.algo.omniquant;

import io.blockquant.model.Family;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.falcon.FalconFlags;
import io.blockquant.model.opt.OptFlags;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.model.falcon.FalconBlock;
import io.blockquant.nn.Linear;
import io.blockquant.model.llama.LlamaBlock;
import io.blockquant.nn.Norm;
import io.blockquant.model.opt.OptBlock;
import io.blockquant.tensor.Activation;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.Random;

/** Small random blocks of each family, built through {@link ModelSpec} like the loader builds real ones. */
final class TestBlocks {

    static final TensorBackend BE = Nd4jBackend.INSTANCE;

    private TestBlocks() {}

    static float[] ropeInvFreq(int headDim) {
        float[] f = new float[headDim / 2];
        for (int i = 0; i < f.length; i++) f[i] = (float) (1.0 / Math.pow(10000.0, 2.0 * i / headDim));
        return f;
    }

    /** Llama: grouped-query (heads/kvHeads = 2); OPT: biases, ReLU; Falcon: multi-query, GELU, biases when asked. */
    static ModelSpec spec(Family family, int hidden, int heads, int kvHeads, int ff, boolean falconBias) {
        int d = hidden / heads;
        switch (family) {
            case LLAMA:
                return new ModelSpec(Family.LLAMA, "llama", hidden, 1, heads, kvHeads, d, ff, 64, 128, 1e-5f,
                        Activation.SILU, false, false, false, false, ropeInvFreq(d), null);
            case OPT:
                return new ModelSpec(Family.OPT, "opt", hidden, 1, heads, heads, d, ff, 64, 128, 1e-5f,
                        Activation.RELU, true, true, true, true, null, new OptFlags(true, true, hidden));
            case FALCON:
                return new ModelSpec(Family.FALCON, "falcon", hidden, 1, heads, 1, d, ff, 64, 128, 1e-5f,
                        Activation.GELU, falconBias, falconBias, falconBias, true, ropeInvFreq(d), new FalconFlags(false, 1));
            default:
                throw new AssertionError(family);
        }
    }

    static Tensor gaussian(Random rnd, double std, long... shape) {
        int n = 1;
        for (long s : shape) n *= (int) s;
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (rnd.nextGaussian() * std);
        return BE.fromFloats(a, shape);
    }

    static Tensor around(Random rnd, double center, double std, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (center + rnd.nextGaussian() * std);
        return BE.fromFloats(a, n);
    }

    static Linear linear(Random rnd, String name, int out, int in, boolean bias) {
        return new Linear(name, gaussian(rnd, 1.0 / Math.sqrt(in), out, in), bias ? gaussian(rnd, 0.1, out) : null);
    }

    static DecoderBlock block(ModelSpec s, long seed) {
        Random rnd = new Random(seed);
        int h = s.hiddenSize(), d = s.headDim(), q = s.numHeads() * d, kv = s.numKvHeads() * d, ff = s.intermediateSize();
        switch (s.family()) {
            case LLAMA:
                return new LlamaBlock(s, Norm.rms(around(rnd, 1, 0.2, h), s.normEps()),
                        linear(rnd, "self_attn.q_proj", q, h, false), linear(rnd, "self_attn.k_proj", kv, h, false),
                        linear(rnd, "self_attn.v_proj", kv, h, false), linear(rnd, "self_attn.o_proj", h, q, false),
                        Norm.rms(around(rnd, 1, 0.2, h), s.normEps()),
                        linear(rnd, "mlp.gate_proj", ff, h, false), linear(rnd, "mlp.up_proj", ff, h, false),
                        linear(rnd, "mlp.down_proj", h, ff, false));
            case OPT:
                return new OptBlock(s, Norm.layer(around(rnd, 1, 0.2, h), around(rnd, 0, 0.1, h), s.normEps()),
                        linear(rnd, "self_attn.q_proj", h, h, true), linear(rnd, "self_attn.k_proj", h, h, true),
                        linear(rnd, "self_attn.v_proj", h, h, true), linear(rnd, "self_attn.out_proj", h, h, true),
                        Norm.layer(around(rnd, 1, 0.2, h), around(rnd, 0, 0.1, h), s.normEps()),
                        linear(rnd, "fc1", ff, h, true), linear(rnd, "fc2", h, ff, true));
            case FALCON:
                return new FalconBlock(s, Norm.layer(around(rnd, 1, 0.2, h), around(rnd, 0, 0.1, h), s.normEps()), null,
                        linear(rnd, "self_attention.query_key_value", q + 2 * kv, h, s.qkvBias()),
                        linear(rnd, "self_attention.dense", h, q, s.outBias()),
                        linear(rnd, "mlp.dense_h_to_4h", ff, h, s.mlpBias()),
                        linear(rnd, "mlp.dense_4h_to_h", h, ff, s.mlpBias()));
            default:
                throw new AssertionError(s.family());
        }
    }

    /** Hidden states with a few outlier channels, as real activations have (what LET is for). */
    static float[] inputs(Random rnd, int rows, int hidden) {
        float[] x = new float[rows * hidden];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < hidden; c++) x[r * hidden + c] = (float) (rnd.nextGaussian() * (c % 7 == 3 ? 6 : 1) + (c % 5 == 1 ? 2 : 0));
        }
        return x;
    }

    static float[] forward(DecoderBlock block, float[] x, int batch, int seq) {
        int h = (int) block.linears().get(0).weight().size(1);
        return BE.scratchValue(() -> block.forward(BE.fromFloats(x, (long) batch * seq, h), batch, seq).toFloats());
    }
}
