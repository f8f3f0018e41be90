package io.blockquant.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.Fixtures;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String EMBED = "model.embed_tokens.weight";

    @TempDir
    java.nio.file.Path tmp;

    /** A copy of a fixture model folder that a test may break. */
    private java.nio.file.Path copyOf(String model) throws IOException {
        java.nio.file.Path dst = tmp.resolve(model);
        Files.createDirectories(dst);
        try (Stream<java.nio.file.Path> files = Files.list(Fixtures.model(model))) {
            for (java.nio.file.Path f : (Iterable<java.nio.file.Path>) files::iterator) {
                Files.copy(f, dst.resolve(f.getFileName()));
            }
        }
        return dst;
    }

    private static JsonNode weightMap(java.nio.file.Path dir) throws IOException {
        return JSON.readTree(dir.resolve(Checkpoint.INDEX).toFile()).get("weight_map");
    }

    private static void assertMentions(Throwable e, String... parts) {
        for (String part : parts) {
            assertTrue(e.getMessage().contains(part), () -> "message should mention '" + part + "': " + e.getMessage());
        }
    }

    private static Checkpoint open(java.nio.file.Path dir) {
        return Checkpoint.open(new Path(dir.toUri()), new Configuration());
    }

    @Test
    void opensEveryFixtureAndMatchesTheIndex() throws IOException {
        for (String model : Fixtures.MODELS) {
            java.nio.file.Path dir = Fixtures.model(model);
            JsonNode map = weightMap(dir);
            Set<String> expected = new TreeSet<>();
            map.fieldNames().forEachRemaining(expected::add);
            try (Checkpoint ck = open(dir)) {
                assertEquals(expected, new TreeSet<>(ck.tensorNames()), model);
                for (String name : expected) {
                    assertTrue(ck.has(name));
                    // the entry comes from the shard the index names
                    try (SafetensorsFile shard = SafetensorsFile.open(ck.fileSystem(),
                            new Path(new Path(dir.toUri()), map.get(name).asText()))) {
                        assertArrayEquals(shard.entry(name).shape(), ck.entry(name).shape(), name);
                    }
                }
                assertFalse(ck.has("no.such.tensor"));
            }
        }
    }

    @Test
    void opensThroughAFileUriString() throws IOException {
        java.nio.file.Path dir = Fixtures.model("tiny-llama");
        String uri = dir.toUri().toString();
        assertTrue(uri.startsWith("file:"), uri);
        String shardName = weightMap(dir).get(EMBED).asText();
        try (Checkpoint ck = Checkpoint.open(uri);
             SafetensorsFile shard = SafetensorsFile.open(ck.fileSystem(), new Path(dir.resolve(shardName).toUri()))) {
            assertEquals("file", ck.fileSystem().getUri().getScheme());
            float[] v = ck.readFloats(EMBED, 4096, 256);
            assertEquals(4096 * 256, v.length);
            assertArrayEquals(shard.readFloats(EMBED), v);
            // without an expected shape the check is skipped
            assertArrayEquals(v, ck.readFloats(EMBED));
        }
    }

    @Test
    void missingShardIsNamed() throws IOException {
        java.nio.file.Path dir = copyOf("tiny-llama");
        String shard = "model-00002-of-00003.safetensors";
        assertTrue(weightMap(dir).toString().contains(shard));
        Files.delete(dir.resolve(shard));
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> open(dir).close());
        assertMentions(e, Checkpoint.INDEX, "'" + shard + "'", "missing");
    }

    @Test
    void indexPointingAtTheWrongShardFails() throws IOException {
        java.nio.file.Path dir = copyOf("tiny-llama");
        ObjectNode root = (ObjectNode) JSON.readTree(dir.resolve(Checkpoint.INDEX).toFile());
        String actual = root.get("weight_map").get(EMBED).asText();
        String wrong = "model-00003-of-00003.safetensors";
        assertFalse(actual.equals(wrong));
        ((ObjectNode) root.get("weight_map")).put(EMBED, wrong);
        JSON.writeValue(dir.resolve(Checkpoint.INDEX).toFile(), root);
        // found when the shard is first used (headers are read lazily), before any of its data is
        try (Checkpoint ck = open(dir)) {
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> ck.readFloats(EMBED));
            assertMentions(e, Checkpoint.INDEX, "'" + EMBED + "'", wrong, "does not hold it");
        }
    }

    @Test
    void aShardsHeaderIsReadOnlyWhenOneOfItsTensorsIsNeeded() throws IOException {
        java.nio.file.Path dir = copyOf("tiny-llama");
        Map<String, String> where = new java.util.TreeMap<>();
        weightMap(dir).fields().forEachRemaining(e -> where.put(e.getKey(), e.getValue().asText()));
        String broken = "model-00003-of-00003.safetensors";
        Files.write(dir.resolve(broken), new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, 0, 0, 0, 0, '{'});
        String fine = where.entrySet().stream().filter(e -> !e.getValue().equals(broken)).findFirst().orElseThrow().getKey();
        String inBroken = where.entrySet().stream().filter(e -> e.getValue().equals(broken)).findFirst().orElseThrow().getKey();
        try (Checkpoint ck = open(dir)) { // no shard header parsed yet: the broken one does not stop the open
            assertEquals(where.keySet(), new java.util.TreeSet<>(ck.tensorNames()));
            assertTrue(ck.readFloats(fine).length > 0);
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> ck.readFloats(inBroken));
            assertMentions(e, broken);
        }
    }

    @Test
    void shardNameEscapingTheFolderFails() throws IOException {
        java.nio.file.Path dir = copyOf("tiny-opt");
        ObjectNode root = (ObjectNode) JSON.readTree(dir.resolve(Checkpoint.INDEX).toFile());
        String name = root.get("weight_map").fieldNames().next();
        ((ObjectNode) root.get("weight_map")).put(name, "../elsewhere.safetensors");
        JSON.writeValue(dir.resolve(Checkpoint.INDEX).toFile(), root);
        assertMentions(assertThrows(ModelFormatException.class, () -> open(dir).close()),
                "../elsewhere.safetensors", "'" + name + "'");
    }

    @Test
    void unknownTensorIsNamed() {
        try (Checkpoint ck = open(Fixtures.model("tiny-falcon"))) {
            ModelFormatException e = assertThrows(ModelFormatException.class,
                    () -> ck.readFloats("transformer.h.99.mlp.dense_4h_to_h.weight"));
            assertMentions(e, "'transformer.h.99.mlp.dense_4h_to_h.weight'", "missing");
            assertThrows(ModelFormatException.class, () -> ck.entry("nope"));
        }
    }

    @Test
    void wrongExpectedShapeNamesBothShapes() {
        try (Checkpoint ck = open(Fixtures.model("tiny-llama"))) {
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> ck.readFloats(EMBED, 256, 4096));
            assertMentions(e, "'" + EMBED + "'", "[4096, 256]", "[256, 4096]");
            assertThrows(ModelFormatException.class, () -> ck.readFloats(EMBED, 4096 * 256));
        }
    }

    /** A single-file checkpoint: {@code model.safetensors} with one clean tensor and two non-finite ones. */
    @Test
    void nonFiniteTensorIsNamed() throws IOException {
        java.nio.file.Path dir = tmp.resolve("single");
        Files.createDirectories(dir);
        float[] ok = {1f, -2f, 0.5f, 3f};
        float[] nan = {1f, 2f, Float.NaN, 4f};
        float[] inf = {Float.NEGATIVE_INFINITY, 0f, 0f, 0f};
        String header = "{\"ok\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                + "\"has_nan\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]},"
                + "\"has_inf\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[32,48]}}";
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer buf = ByteBuffer.allocate(8 + h.length + 48).order(ByteOrder.LITTLE_ENDIAN);
        buf.putLong(h.length).put(h);
        for (float[] a : new float[][] {ok, nan, inf}) for (float v : a) buf.putFloat(v);
        Files.write(dir.resolve(Checkpoint.SINGLE), buf.array());

        try (Checkpoint ck = open(dir)) {
            assertEquals(Set.of("ok", "has_nan", "has_inf"), ck.tensorNames());
            assertArrayEquals(ok, ck.readFloats("ok", 2, 2));
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> ck.readFloats("has_nan", 2, 2));
            assertMentions(e, Checkpoint.SINGLE, "'has_nan'", "NaN", "flat index 2");
            assertMentions(assertThrows(ModelFormatException.class, () -> ck.readFloats("has_inf")),
                    "'has_inf'", "flat index 0");
            assertMentions(assertThrows(ModelFormatException.class, () -> ck.readFloats("absent")),
                    "'absent'", Checkpoint.SINGLE);
        }
    }

    @Test
    void folderWithoutSafetensorsFails() throws IOException {
        java.nio.file.Path dir = tmp.resolve("empty-model");
        Files.createDirectories(dir);
        Files.copy(Fixtures.model("tiny-llama").resolve("config.json"), dir.resolve("config.json"));
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> open(dir).close());
        assertMentions(e, "empty-model", Checkpoint.SINGLE, Checkpoint.INDEX);

        java.nio.file.Path absent = tmp.resolve("does-not-exist");
        assertMentions(assertThrows(ModelFormatException.class, () -> open(absent).close()),
                "does-not-exist", "not found");
    }

    @Test
    void brokenIndexFails() throws IOException {
        java.nio.file.Path dir = copyOf("tiny-falcon");
        Files.writeString(dir.resolve(Checkpoint.INDEX), "{\"metadata\": {}}");
        assertMentions(assertThrows(ModelFormatException.class, () -> open(dir).close()), Checkpoint.INDEX, "weight_map");
        Files.writeString(dir.resolve(Checkpoint.INDEX), "{\"weight_map\": ");
        assertMentions(assertThrows(ModelFormatException.class, () -> open(dir).close()), Checkpoint.INDEX, "JSON");
    }
}
