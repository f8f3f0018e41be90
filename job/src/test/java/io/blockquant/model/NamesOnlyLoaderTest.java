package io.blockquant.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.Fixtures;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** A loader asked only for names (export, the store's own tensors) holds no backend: it cannot load ND4J. */
class NamesOnlyLoaderTest {

    @Test
    void namesWithoutABackendAndNoTensorRead() throws Exception {
        ModelSpec spec = ModelSpecReader.parse("tiny-llama/config.json",
                new ObjectMapper().readTree(Fixtures.model("tiny-llama").resolve("config.json").toFile()));
        ModelLoader names = ModelLoader.forNames(new InMemoryWeights("names", Map.of(), Map.of()), spec);
        assertEquals("model.layers.3.", names.blockPrefix(3));
        assertEquals("model.embed_tokens.weight", names.tokenEmbeddingName());
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> names.block(0));
        assertTrue(e.getMessage().contains("reads no tensor"), e.getMessage());
    }
}
