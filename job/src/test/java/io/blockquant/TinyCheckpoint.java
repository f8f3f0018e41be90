package io.blockquant;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * A small Llama checkpoint written by a test (2 blocks, hidden 64, 4 heads / 2 KV heads, MLP 128, float32,
 * tied head) with the fixture's tokenizer, so bad-input cases can break one thing at a time and still run
 * the real quantize job in seconds. {@link #write} lays out {@code config.json}, {@code tokenizer.json} and
 * one {@code model.safetensors} or two shards with {@code model.safetensors.index.json}.
 */
public final class TinyCheckpoint {

    public static final int HIDDEN = 64, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 16, FF = 128, VOCAB = 4096;

    private static final ObjectMapper JSON = new ObjectMapper();

    /** One tensor: its name, header dtype, shape and raw little-endian bytes. */
    public record Tensor(String name, String dtype, long[] shape, byte[] data) {}

    public final Map<String, Object> config = new LinkedHashMap<>();
    public final List<Tensor> tensors = new ArrayList<>();

    /** Random weights (seeded) for {@code layers} blocks; norms are ones. */
    public static TinyCheckpoint llama(int layers, long seed) {
        TinyCheckpoint c = new TinyCheckpoint();
        c.config.put("architectures", List.of("LlamaForCausalLM"));
        c.config.put("model_type", "llama");
        c.config.put("hidden_size", HIDDEN);
        c.config.put("num_attention_heads", HEADS);
        c.config.put("num_key_value_heads", KV_HEADS);
        c.config.put("num_hidden_layers", layers);
        c.config.put("intermediate_size", FF);
        c.config.put("vocab_size", VOCAB);
        c.config.put("max_position_embeddings", 256);
        c.config.put("rms_norm_eps", 1e-5);
        c.config.put("hidden_act", "silu");
        c.config.put("rope_theta", 10000.0);
        c.config.put("tie_word_embeddings", true);
        c.config.put("torch_dtype", "float32");
        Random rnd = new Random(seed);
        c.add("model.embed_tokens.weight", rnd, VOCAB, HIDDEN);
        for (int i = 0; i < layers; i++) {
            String p = "model.layers." + i + ".";
            c.ones(p + "input_layernorm.weight", HIDDEN);
            c.add(p + "self_attn.q_proj.weight", rnd, HEADS * HEAD_DIM, HIDDEN);
            c.add(p + "self_attn.k_proj.weight", rnd, KV_HEADS * HEAD_DIM, HIDDEN);
            c.add(p + "self_attn.v_proj.weight", rnd, KV_HEADS * HEAD_DIM, HIDDEN);
            c.add(p + "self_attn.o_proj.weight", rnd, HIDDEN, HEADS * HEAD_DIM);
            c.ones(p + "post_attention_layernorm.weight", HIDDEN);
            c.add(p + "mlp.gate_proj.weight", rnd, FF, HIDDEN);
            c.add(p + "mlp.up_proj.weight", rnd, FF, HIDDEN);
            c.add(p + "mlp.down_proj.weight", rnd, HIDDEN, FF);
        }
        c.ones("model.norm.weight", HIDDEN);
        return c;
    }

    private void add(String name, Random rnd, int rows, int cols) {
        float[] v = new float[rows * cols];
        for (int i = 0; i < v.length; i++) v[i] = (float) (0.05 * rnd.nextGaussian());
        tensors.add(new Tensor(name, "F32", new long[] {rows, cols}, f32(v)));
    }

    private void ones(String name, int n) {
        float[] v = new float[n];
        Arrays.fill(v, 1f);
        tensors.add(new Tensor(name, "F32", new long[] {n}, f32(v)));
    }

    public static byte[] f32(float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(v);
        return b.array();
    }

    /** Sets element {@code index} of tensor {@code name} (float32) to {@code value}. */
    public TinyCheckpoint poke(String name, int index, float value) {
        Tensor t = tensors.stream().filter(x -> x.name().equals(name)).findFirst().orElseThrow();
        ByteBuffer.wrap(t.data()).order(ByteOrder.LITTLE_ENDIAN).putFloat(4 * index, value);
        return this;
    }

    /** Writes the folder: one safetensors file, or {@code shards} files with an index. */
    public Path write(Path dir, int shards) throws IOException {
        Files.createDirectories(dir);
        Files.write(dir.resolve("config.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(config));
        Files.copy(Fixtures.model("tiny-llama").resolve("tokenizer.json"), dir.resolve("tokenizer.json"));
        if (shards <= 1) {
            Files.write(dir.resolve("model.safetensors"), safetensors(tensors));
            return dir;
        }
        Map<String, Object> weightMap = new LinkedHashMap<>();
        int per = (tensors.size() + shards - 1) / shards;
        for (int s = 0; s < shards; s++) {
            String file = String.format("model-%05d-of-%05d.safetensors", s + 1, shards);
            List<Tensor> part = tensors.subList(s * per, Math.min(tensors.size(), (s + 1) * per));
            part.forEach(t -> weightMap.put(t.name(), file));
            Files.write(dir.resolve(file), safetensors(part));
        }
        Files.write(dir.resolve("model.safetensors.index.json"),
                JSON.writeValueAsBytes(Map.of("metadata", Map.of(), "weight_map", weightMap)));
        return dir;
    }

    /** A well-formed safetensors file: data back to back in list order. */
    public static byte[] safetensors(List<Tensor> tensors) throws IOException {
        StringBuilder header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        ByteArrayOutputStream data = new ByteArrayOutputStream();
        for (Tensor t : tensors) {
            long begin = data.size();
            data.write(t.data());
            header.append(",\"").append(t.name()).append("\":{\"dtype\":\"").append(t.dtype())
                    .append("\",\"shape\":").append(Arrays.toString(t.shape()).replace(" ", ""))
                    .append(",\"data_offsets\":[").append(begin).append(",").append(data.size()).append("]}");
        }
        header.append("}");
        return raw(header.toString(), data.toByteArray());
    }

    /** 8-byte little-endian header length, the header text as given, then the data. */
    public static byte[] raw(String header, byte[] data) {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(8 + h.length + data.length).order(ByteOrder.LITTLE_ENDIAN)
                .putLong(h.length).put(h).put(data).array();
    }
}
