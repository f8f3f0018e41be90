package io.blockquant.export;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

/** The store's KV cache as compressed-tensors' kv_cache_scheme: exactly the recipe's, or null without one. */
class KvCacheSchemeTest {

    static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void theRecipesKvCacheBecomesTheScheme() throws Exception {
        assertTrue(CompressedTensorsScheme.kvCacheScheme(JSON.readTree("{\"kv_bits\": 0, \"kv_format\": null}")).isNull());
        assertTrue(CompressedTensorsScheme.kvCacheScheme(JSON.readTree("{\"abits\": 0}")).isNull(), "a store from before the key");
        JsonNode fp8 = CompressedTensorsScheme.kvCacheScheme(JSON.readTree("{\"kv_bits\": 8, \"kv_format\": \"fp8\"}"));
        assertEquals(JSON.readTree("{\"num_bits\": 8, \"type\": \"float\", \"symmetric\": true, \"group_size\": null, \"strategy\": \"token\","
                + " \"block_structure\": null, \"dynamic\": true, \"actorder\": null}"), fp8);
        JsonNode int4 = CompressedTensorsScheme.kvCacheScheme(JSON.readTree("{\"kv_bits\": 4, \"kv_format\": \"int\"}"));
        assertEquals(4, int4.get("num_bits").asInt());
        assertEquals("int", int4.get("type").asText());
        assertEquals(false, int4.get("symmetric").asBoolean(), "INT KV caches are asymmetric (zero point), as the reference's K/V quantizer");
        assertEquals(true, int4.get("dynamic").asBoolean());
    }
}
