package io.blockquant.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.model.Family;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.nn.Linear;
import io.blockquant.model.llama.LlamaBlock;
import io.blockquant.nn.Norm;
import io.blockquant.tensor.ForwardOps;
import io.blockquant.tensor.Tensor;

/**
 * Llama blocks of a given shape with random weights: the speed of a block depends on its shapes, not on
 * its values. Specs go through {@link ModelSpecReader} from a config.json-like object, as a real model's do.
 */
public final class RandomBlocks {

    private RandomBlocks() {}

    /** A Llama-7B-shaped spec (hidden 4096, 32 heads × 128, no GQA, MLP 11008), every size divided by {@code shrink}. */
    public static ModelSpec llama7b(int shrink) {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.put("model_type", "llama");
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("hidden_size", 4096 / shrink);
        c.put("num_attention_heads", 32 / shrink);
        c.put("num_key_value_heads", 32 / shrink);
        c.put("head_dim", 128);
        c.put("intermediate_size", 11008 / shrink);
        c.put("num_hidden_layers", 32);
        c.put("vocab_size", 32000);
        c.put("max_position_embeddings", 2048);
        c.put("rms_norm_eps", 1e-6);
        c.put("rope_theta", 10000.0);
        return ModelSpecReader.parse(shrink == 1 ? "llama-7b shape" : "llama-7b shape / " + shrink, c);
    }

    /** A block of {@code spec}'s shape: weights uniform with standard deviation 0.02, norm weights 1. */
    public static LlamaBlock llama(ModelSpec spec, ForwardOps be, long seed) {
        if (spec.family() != Family.LLAMA) throw new IllegalArgumentException("random blocks are Llama blocks, not " + spec.family());
        FastRandom rnd = new FastRandom(seed);
        int h = spec.hiddenSize(), q = spec.numHeads() * spec.headDim(), kv = spec.numKvHeads() * spec.headDim();
        int ff = spec.intermediateSize();
        float[] ones = new float[h];
        java.util.Arrays.fill(ones, 1f);
        return new LlamaBlock(spec, Norm.rms(be.fromFloats(ones, h), spec.normEps()),
                linear(be, rnd, "self_attn.q_proj", q, h), linear(be, rnd, "self_attn.k_proj", kv, h),
                linear(be, rnd, "self_attn.v_proj", kv, h), linear(be, rnd, "self_attn.o_proj", h, q),
                Norm.rms(be.fromFloats(ones.clone(), h), spec.normEps()),
                linear(be, rnd, "mlp.gate_proj", ff, h), linear(be, rnd, "mlp.up_proj", ff, h),
                linear(be, rnd, "mlp.down_proj", h, ff));
    }

    private static Linear linear(ForwardOps be, FastRandom rnd, String name, int out, int in) {
        return new Linear(name, be.fromFloats(rnd.uniform((long) out * in, 0.02), out, in), null);
    }

    /** Random activations {@code [rows, cols]}, standard deviation 1. */
    public static Tensor activations(ForwardOps be, long seed, int rows, int cols) {
        return be.fromFloats(new FastRandom(seed).uniform((long) rows * cols, 1.0), rows, cols);
    }

    /**
     * xorshift64* floats, uniform with the given standard deviation: filling a 7B block's 200 M weights
     * with {@code Random.nextGaussian} would take longer than running the block.
     */
    public static final class FastRandom {
        private long state;

        public FastRandom(long seed) {
            state = seed * 0x9E3779B97F4A7C15L + 0x632BE59BD9B4E019L;
            if (state == 0) state = 1;
        }

        public float[] uniform(long n, double std) {
            if (n > Integer.MAX_VALUE - 8) throw new IllegalArgumentException(n + " values do not fit one array");
            float[] out = new float[(int) n];
            float half = (float) (std * Math.sqrt(3.0)); // uniform on [−a, a] has std a/√3
            for (int i = 0; i < out.length; i++) {
                state ^= state >>> 12;
                state ^= state << 25;
                state ^= state >>> 27;
                long r = state * 0x2545F4914F6CDD1DL;
                out[i] = ((r >>> 40) * 0x1.0p-24f * 2f - 1f) * half;
            }
            return out;
        }
    }
}
