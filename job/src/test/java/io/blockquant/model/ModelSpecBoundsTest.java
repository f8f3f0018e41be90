package io.blockquant.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.Fixtures;
import java.io.IOException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Each bound on config.json's sizes refuses a value past it in one line naming the key, before anything is sized. */
class ModelSpecBoundsTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    private static ObjectNode config(String model) throws IOException {
        return (ObjectNode) JSON.readTree(Fixtures.model(model).resolve("config.json").toFile());
    }

    private static void assertRefused(ObjectNode c, String key, String why) {
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelSpecReader.parse("m/config.json", c));
        assertTrue(e.getMessage().startsWith("m/config.json: "), e.getMessage());
        assertTrue(e.getMessage().contains(key), "names " + key + ": " + e.getMessage());
        assertTrue(e.getMessage().contains(why), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), "one line: " + e.getMessage());
    }

    @ParameterizedTest(name = "{0} {1} = {2}")
    @CsvSource({
            "tiny-llama, num_hidden_layers, 2147483647",
            "tiny-llama, num_attention_heads, 4096",
            "tiny-llama, num_key_value_heads, 2048",
            "tiny-llama, hidden_size, 262144",
            "tiny-llama, intermediate_size, 2097152",
            "tiny-llama, head_dim, 4096",
            "tiny-llama, vocab_size, 8388608",
            "tiny-llama, max_position_embeddings, 33554432",
            "tiny-opt, ffn_dim, 2097152",
            "tiny-opt, num_hidden_layers, 1025",
            "tiny-falcon, n_layer, 5000",
            "tiny-falcon, vocab_size, 2147483647",
    })
    void aSizePastItsBoundIsRefusedNamingTheKey(String model, String key, long value) throws IOException {
        ObjectNode c = config(model);
        if (model.equals("tiny-falcon") && key.equals("n_layer")) c.remove("num_hidden_layers");
        c.put(key, value);
        assertRefused(c, "'" + key + "'", "more than " + ModelSpecBounds.MAXIMA.get(key));
    }

    @ParameterizedTest(name = "partial_rotary_factor = {0}")
    @CsvSource({"-0.5", "0", "1.5", "1e9"})
    void aRotaryFractionOutsideZeroToOneIsRefused(double f) throws IOException {
        ObjectNode c = config("tiny-llama");
        c.put("partial_rotary_factor", f);
        assertRefused(c, "'partial_rotary_factor'", "expected a number in (0, 1]");
    }

    @org.junit.jupiter.api.Test
    void aHalfRotaryFractionRotatesHalfTheHead() throws IOException {
        ObjectNode c = config("tiny-llama");
        c.put("partial_rotary_factor", 0.5);
        ModelSpec s = ModelSpecReader.parse("m/config.json", c);
        assertEquals(s.headDim() / 4, s.invFreq().length);
    }

    @org.junit.jupiter.api.Test
    void widthsThatMakeAWeightPastOneJavaArrayAreRefused() throws IOException {
        ObjectNode c = config("tiny-llama");
        c.put("hidden_size", 65536);
        c.put("head_dim", 64);
        c.put("intermediate_size", 65536); // 2^32 elements, each under its own bound
        assertRefused(c, "hidden_size 65536", "more than one Java array holds");
    }
}
