package io.blockquant.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.Fixtures;
import io.blockquant.model.falcon.FalconFlags;
import io.blockquant.model.opt.OptFlags;
import io.blockquant.tensor.Activation;
import java.io.IOException;
import java.util.Arrays;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;

class ModelSpecReaderTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    private static ObjectNode config(String model) throws IOException {
        return (ObjectNode) JSON.readTree(Fixtures.model(model).resolve("config.json").toFile());
    }

    private static ModelSpec parse(ObjectNode config) {
        return ModelSpecReader.parse("test/config.json", config);
    }

    private static void assertMentions(Throwable e, String... parts) {
        for (String part : parts) {
            assertTrue(e.getMessage().contains(part), () -> "message should mention '" + part + "': " + e.getMessage());
        }
    }

    private static ModelFormatException fails(ObjectNode config) {
        return assertThrows(ModelFormatException.class, () -> parse(config));
    }

    /** 1/θ^(2i/d) in float64, the exact value the float32/bf16 frequencies approximate. */
    private static double exactInvFreq(double theta, int i, int rotaryDim) {
        return 1.0 / Math.pow(theta, 2.0 * i / rotaryDim);
    }

    private static void assertBf16InvFreq(float[] inv, int headDim, double theta) {
        assertNotNull(inv);
        assertEquals(headDim / 2, inv.length);
        assertEquals(1.0f, inv[0]);
        for (int i = 0; i < inv.length; i++) {
            double ref = exactInvFreq(theta, i, headDim);
            // the config's dtype is bfloat16: each value is a bfloat16 (low 16 bits clear) within half a bf16 ulp
            assertEquals(0, Float.floatToRawIntBits(inv[i]) & 0xffff, "invFreq[" + i + "] is not a bfloat16 value");
            assertEquals(ref, inv[i], ref * 0x1p-8 * 1.01, "invFreq[" + i + "]");
            if (i > 0) assertTrue(inv[i] <= inv[i - 1]);
        }
    }

    @Test
    void llamaFixture() throws IOException {
        ModelSpec s = parse(config("tiny-llama"));
        assertEquals(Family.LLAMA, s.family());
        assertEquals("llama", s.modelType());
        assertEquals(256, s.hiddenSize());
        assertEquals(8, s.numLayers());
        assertEquals(8, s.numHeads());
        assertEquals(4, s.numKvHeads());
        assertEquals(2, s.kvGroups());
        assertEquals(32, s.headDim());
        assertEquals(704, s.intermediateSize());
        assertEquals(4096, s.vocabSize());
        assertEquals(1024, s.maxPositions());
        assertEquals(1e-5f, s.normEps());
        assertEquals(Activation.SILU, s.activation());
        assertFalse(s.qkvBias());
        assertFalse(s.outBias());
        assertFalse(s.mlpBias());
        assertFalse(s.tieWordEmbeddings());
        assertBf16InvFreq(s.invFreq(), 32, 10000.0);
    }

    @Test
    void falconFixture() throws IOException {
        ModelSpec s = parse(config("tiny-falcon"));
        assertEquals(Family.FALCON, s.family());
        assertEquals(256, s.hiddenSize());
        assertEquals(6, s.numLayers());
        assertEquals(8, s.numHeads());
        assertEquals(1, s.numKvHeads()); // multi_query: true wins over num_kv_heads in the old layout
        assertEquals(32, s.headDim());
        assertEquals(1024, s.intermediateSize());
        assertEquals(4096, s.vocabSize());
        assertEquals(Activation.GELU, s.activation());
        assertFalse(FalconFlags.of(s).newLayout());
        assertEquals(1, FalconFlags.of(s).layerNorms());
        assertTrue(s.tieWordEmbeddings());
        assertFalse(s.qkvBias());
        assertBf16InvFreq(s.invFreq(), 32, 10000.0);
    }

    @Test
    void optFixture() throws IOException {
        ModelSpec s = parse(config("tiny-opt"));
        assertEquals(Family.OPT, s.family());
        assertEquals(256, s.hiddenSize());
        assertEquals(6, s.numLayers());
        assertEquals(8, s.numHeads());
        assertEquals(8, s.numKvHeads());
        assertEquals(32, s.headDim());
        assertEquals(1024, s.intermediateSize());
        assertEquals(4096, s.vocabSize());
        assertEquals(1024, s.maxPositions());
        assertEquals(Activation.RELU, s.activation());
        assertNull(s.invFreq());
        assertTrue(s.qkvBias());
        assertTrue(OptFlags.of(s).normBefore());
        assertTrue(OptFlags.of(s).finalNorm());
        assertEquals(256, OptFlags.of(s).projDim());
    }

    @Test
    void readsConfigFromAModelFolder() throws IOException {
        ModelSpec fromFolder = ModelSpecReader.read(new Path(Fixtures.model("tiny-opt").toUri()), new Configuration());
        ModelSpec parsed = parse(config("tiny-opt"));
        assertEquals(parsed.describe(), fromFolder.describe());
        ModelFormatException e = assertThrows(ModelFormatException.class,
                () -> ModelSpecReader.read(new Path(Fixtures.ROOT.resolve("corpus").toUri()), new Configuration()));
        assertMentions(e, "config.json", "not found");
    }

    @Test
    void ropeThetaAtTopLevelEqualsThetaUnderRopeParameters() throws IOException {
        ObjectNode nested = config("tiny-llama");
        ((ObjectNode) nested.get("rope_parameters")).put("rope_theta", 500000.0);
        nested.put("torch_dtype", "float32"); // keep full float32 precision so a different theta shows
        nested.remove("dtype");

        ObjectNode top = config("tiny-llama");
        top.remove("rope_parameters");
        top.put("rope_theta", 500000.0);
        top.put("torch_dtype", "float32");
        top.remove("dtype");

        float[] a = parse(nested).invFreq(), b = parse(top).invFreq();
        assertArrayEquals(a, b);

        ObjectNode base = config("tiny-llama");
        base.put("torch_dtype", "float32");
        base.remove("dtype");
        float[] defaultTheta = parse(base).invFreq();
        assertFalse(Arrays.equals(defaultTheta, a), "theta 500000 must change the frequencies");
        for (int i = 0; i < a.length; i++) {
            double ref = exactInvFreq(500000.0, i, 32);
            assertEquals(ref, a[i], ref * 1e-6, "invFreq[" + i + "]");
            assertEquals(exactInvFreq(10000.0, i, 32), defaultTheta[i], exactInvFreq(10000.0, i, 32) * 1e-6);
        }
    }

    @Test
    void float16ConfigRoundsInvFreqToFloat16() throws IOException {
        ObjectNode c = config("tiny-llama");
        c.put("dtype", "float16");
        float[] inv = parse(c).invFreq();
        for (int i = 0; i < inv.length; i++) {
            assertEquals(FloatRounding.toFloat16((float) exactInvFreq(10000.0, i, 32)), inv[i], 0f,
                    "invFreq[" + i + "]");
        }
    }

    @Test
    void newFalconArchitecture() throws IOException {
        ObjectNode c = config("tiny-falcon");
        c.put("new_decoder_architecture", true);
        c.put("num_kv_heads", 2);
        ModelSpec s = parse(c);
        assertEquals(2, s.numKvHeads());
        assertEquals(4, s.kvGroups());
        assertTrue(FalconFlags.of(s).newLayout());
        assertEquals(2, FalconFlags.of(s).layerNorms()); // num_ln_in_parallel_attn null -> 2, like transformers

        c.put("num_ln_in_parallel_attn", 1);
        assertEquals(1, FalconFlags.of(parse(c)).layerNorms());

        c.put("num_kv_heads", 3);
        assertMentions(fails(c), "num_kv_heads", "3", "num_attention_heads");
    }

    @Test
    void unknownModelTypeIsUnsupported() throws IOException {
        ObjectNode c = config("tiny-llama");
        c.put("model_type", "gpt2");
        assertMentions(fails(c), "test/config.json", "unsupported architecture", "gpt2");
        c.remove("model_type");
        assertMentions(fails(c), "unsupported architecture", "LlamaForCausalLM");
    }

    @Test
    void missingHiddenSizeIsNamed() throws IOException {
        for (String model : Fixtures.MODELS) {
            ObjectNode c = config(model);
            c.remove("hidden_size");
            assertMentions(fails(c), "test/config.json", "'hidden_size'");
        }
    }

    @Test
    void headsNotDividingHiddenSizeIsNamed() throws IOException {
        ObjectNode opt = config("tiny-opt");
        opt.put("num_attention_heads", 7);
        assertMentions(fails(opt), "num_attention_heads", "7", "hidden_size", "256");

        ObjectNode falcon = config("tiny-falcon");
        falcon.put("num_attention_heads", 7);
        assertMentions(fails(falcon), "num_attention_heads", "hidden_size");

        ObjectNode llama = config("tiny-llama");
        llama.remove("head_dim"); // with head_dim given, heads need not divide hidden_size
        llama.put("num_attention_heads", 6);
        llama.put("num_key_value_heads", 6);
        assertMentions(fails(llama), "num_attention_heads", "hidden_size");
    }

    @Test
    void kvHeadsNotDividingHeadsIsNamed() throws IOException {
        ObjectNode c = config("tiny-llama");
        c.put("num_key_value_heads", 3);
        assertMentions(fails(c), "num_key_value_heads", "3", "num_attention_heads", "8");
        c.put("num_key_value_heads", 0);
        assertMentions(fails(c), "num_key_value_heads");
        c.remove("num_key_value_heads"); // absent: one kv head per head
        assertEquals(8, parse(c).numKvHeads());
    }

    @Test
    void unsupportedSettingsAreNamed() throws IOException {
        ObjectNode llama = config("tiny-llama");
        llama.put("hidden_act", "gelu");
        assertMentions(fails(llama), "hidden_act");

        ObjectNode falcon = config("tiny-falcon");
        falcon.put("alibi", true);
        assertMentions(fails(falcon), "alibi");

        ObjectNode opt = config("tiny-opt");
        opt.put("activation_function", "tanhshrink");
        assertMentions(fails(opt), "activation_function", "tanhshrink");

        ObjectNode rope = config("tiny-llama");
        ((ObjectNode) rope.get("rope_parameters")).put("rope_type", "yarn");
        assertMentions(fails(rope), "rope_type", "yarn");

        assertThrows(ModelFormatException.class, () -> ModelSpecReader.parse("x", JSON.readTree("[1]")));
    }
}
