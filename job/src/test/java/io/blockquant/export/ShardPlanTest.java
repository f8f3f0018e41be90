package io.blockquant.export;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.export.ShardPlan.Planned;
import io.blockquant.export.ShardPlan.Shard;
import io.blockquant.export.ShardPlan.Stored;
import io.blockquant.model.DType;
import io.blockquant.model.SafetensorsWriter.Header;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** How tensors are split into shards (huggingface_hub's rule) and how {@code --max-shard-size} is read. */
class ShardPlanTest {

    static Planned tensor(String name, long bytes) {
        return new Planned(new Header(name, DType.U8, new long[] {bytes}), new Stored(-1, name, "weight", "float32", 1));
    }

    static List<List<String>> names(List<Shard> shards) {
        List<List<String>> out = new ArrayList<>();
        for (Shard s : shards) out.add(s.tensors().stream().map(t -> t.header().name()).toList());
        return out;
    }

    @Test
    void tensorsFillShardsInOrderAndOneLargerThanTheCapGetsItsOwn() {
        List<Planned> tensors = List.of(tensor("a", 40), tensor("b", 60), tensor("c", 1), tensor("big", 250), tensor("d", 99), tensor("e", 100));
        List<Shard> shards = ShardPlan.split(tensors, 100);
        // as split_torch_state_dict_into_shards: "big" is put aside at once, the open shard goes on
        assertEquals(List.of(List.of("a", "b"), List.of("big"), List.of("c", "d"), List.of("e")), names(shards));
        assertEquals(List.of("model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"), shards.stream().map(Shard::file).toList());
        assertEquals(List.of(100L, 250L, 100L, 100L), shards.stream().map(Shard::bytes).toList());
    }

    @Test
    void whatFitsOneShardIsModelSafetensors() {
        List<Shard> shards = ShardPlan.split(List.of(tensor("a", 40), tensor("b", 60)), 100);
        assertEquals(1, shards.size());
        assertEquals("model.safetensors", shards.get(0).file());
    }

    @Test
    void theIndexMapsEveryTensorToItsShardWithTheTotalSize() throws Exception {
        List<Shard> shards = ShardPlan.split(List.of(tensor("b", 60), tensor("a", 70), tensor("c", 5)), 100);
        JsonNode index = new ObjectMapper().readTree(ShardPlan.index(shards));
        assertEquals(135, index.get("metadata").get("total_size").asLong());
        assertEquals("model-00001-of-00002.safetensors", index.get("weight_map").get("b").asText());
        assertEquals("model-00002-of-00002.safetensors", index.get("weight_map").get("a").asText());
        assertEquals("model-00002-of-00002.safetensors", index.get("weight_map").get("c").asText());
        assertEquals(List.of("a", "b", "c"), iterate(index.get("weight_map").fieldNames()), "names sorted, as save_pretrained writes them");
    }

    static List<String> iterate(java.util.Iterator<String> it) {
        List<String> out = new ArrayList<>();
        it.forEachRemaining(out::add);
        return out;
    }

    @Test
    void sizesReadAsHuggingFaceReadsThem() {
        assertEquals(5_000_000_000L, ShardPlan.parseSize("5GB"));
        assertEquals(500_000_000L, ShardPlan.parseSize("500MB"));
        assertEquals(500_000_000L, ShardPlan.parseSize(" 500mb "));
        assertEquals(1_500_000_000L, ShardPlan.parseSize("1.5GB"));
        assertEquals(2L << 30, ShardPlan.parseSize("2GiB"));
        assertEquals(64L << 20, ShardPlan.parseSize("64MiB"));
        assertEquals(1_000L, ShardPlan.parseSize("1KB"));
        assertEquals(123L, ShardPlan.parseSize("123"));
        assertEquals(123L, ShardPlan.parseSize("123B"));
        for (String bad : List.of("", "0", "0GB", "-1GB", "5XB", "GB", "5 G B", "1e9", "99999999999TB")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ShardPlan.parseSize(bad), bad);
            assertTrue(e.getMessage().startsWith("--max-shard-size '" + bad + "'"), e.getMessage());
        }
    }
}
