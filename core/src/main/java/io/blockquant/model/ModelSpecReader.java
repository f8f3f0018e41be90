package io.blockquant.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.tensor.Activation;
import java.io.IOException;
import java.io.InputStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Reads a Hugging Face {@code config.json} into a {@link ModelSpec}, naming the file and key on any error: finds
 * the family by {@code model_type} in {@link Family}'s registry and hands itself to that family's
 * {@link FamilyDescriptor#spec}, which reads its keys through the methods here.
 */
public final class ModelSpecReader {

    private final String source;
    private final JsonNode config;

    private ModelSpecReader(String source, JsonNode config) {
        this.source = source;
        this.config = config;
    }

    public static ModelSpec read(Path modelDir, Configuration conf) {
        Path file = new Path(modelDir, "config.json");
        try {
            FileSystem fs = file.getFileSystem(conf);
            if (!fs.exists(file)) throw new ModelFormatException(file + ": not found (every model folder needs config.json)");
            try (InputStream in = fs.open(file)) {
                return parse(file.toString(), new ObjectMapper().readTree(in));
            }
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new ModelFormatException(file + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        } catch (IOException e) {
            throw new ModelFormatException(file + ": cannot read (" + e.getMessage() + ")", e);
        }
    }

    public static ModelSpec parse(String source, JsonNode config) {
        if (config == null || !config.isObject()) throw new ModelFormatException(source + ": not a JSON object");
        return new ModelSpecReader(source, config).spec();
    }

    private ModelSpec spec() {
        String type = text("model_type", "");
        String arch = config.path("architectures").path(0).asText("");
        Family family = Family.reading(type).orElseThrow(() -> error("unsupported architecture (model_type '" + type
                + "', architectures ['" + arch + "']); supported: " + Family.supportedModelTypes()));
        ModelSpec spec = family.descriptor().spec(this, type);
        ModelSpecBounds.checkSpec(this, spec);
        return spec;
    }

    /** A {@link ModelFormatException} naming this config file. */
    public ModelFormatException error(String message) {
        return new ModelFormatException(source + ": " + message);
    }

    /** The value under {@code key} (a missing node when absent), for a family's own structured keys. */
    public JsonNode node(String key) {
        return config.path(key);
    }

    public boolean flag(String key, boolean fallback) {
        return config.path(key).asBoolean(fallback);
    }

    public String text(String key, String fallback) {
        return config.path(key).asText(fallback);
    }

    public boolean has(String key) {
        return config.hasNonNull(key);
    }

    /** A Hugging Face activation name under {@code key}. */
    public Activation activation(String name, String key) {
        try {
            return Activation.fromHuggingFace(name);
        } catch (IllegalArgumentException e) {
            throw error("key '" + key + "': " + e.getMessage());
        }
    }

    /** RoPE inverse frequencies (default or Llama-3 scaled); theta at top level or under rope_parameters. */
    public float[] ropeInvFreq(int headDim) {
        JsonNode params = config.hasNonNull("rope_parameters") ? config.get("rope_parameters") : config.path("rope_scaling");
        double theta = config.hasNonNull("rope_theta") ? config.get("rope_theta").asDouble()
                : params.path("rope_theta").asDouble(10000.0);
        String ropeType = params.path("rope_type").asText(params.path("type").asText("default"));
        double partial = ModelSpecBounds.rotaryFraction(this, config.path("partial_rotary_factor"));
        int rotaryDim = (int) (headDim * partial);
        float[] inv = new float[rotaryDim / 2];
        for (int i = 0; i < inv.length; i++) {
            // float32 like Hugging Face: 1 / theta^(2i/d)
            inv[i] = (float) (1.0 / Math.pow(theta, (float) (2 * i) / rotaryDim));
        }
        switch (ropeType) {
            case "default":
                break;
            case "llama3":
                inv = llama3Scaling(inv, params);
                break;
            default:
                throw error("rope_type '" + ropeType + "' is not supported (default or llama3)");
        }
        // Transformers keeps inv_freq as a buffer that takes the checkpoint's dtype when the model is loaded
        // in it, and keeps that rounding when upcast to float32; the reference logits carry it (measured:
        // 4e-4 relative logit error on tiny-llama without it, 1e-6 with it).
        String dtype = config.path("torch_dtype").asText(config.path("dtype").asText("float32"));
        for (int i = 0; i < inv.length; i++) {
            if (dtype.equals("bfloat16")) inv[i] = FloatRounding.toBfloat16(inv[i]);
            else if (dtype.equals("float16")) inv[i] = FloatRounding.toFloat16(inv[i]);
        }
        return inv;
    }

    /** Llama-3.1 frequency scaling: long wavelengths divided by factor, a smooth ramp in between. */
    private float[] llama3Scaling(float[] inv, JsonNode p) {
        double factor = p.path("factor").asDouble(8.0), low = p.path("low_freq_factor").asDouble(1.0),
                high = p.path("high_freq_factor").asDouble(4.0),
                oldLen = p.path("original_max_position_embeddings").asDouble(8192);
        double lowWavelen = oldLen / low, highWavelen = oldLen / high;
        float[] out = new float[inv.length];
        for (int i = 0; i < inv.length; i++) {
            double wavelen = 2 * Math.PI / inv[i];
            if (wavelen < highWavelen) out[i] = inv[i];
            else if (wavelen > lowWavelen) out[i] = (float) (inv[i] / factor);
            else {
                double smooth = (oldLen / wavelen - low) / (high - low);
                out[i] = (float) ((1 - smooth) * inv[i] / factor + smooth * inv[i]);
            }
        }
        return out;
    }

    /** A positive integer under {@code key} or the first alias present. */
    public int integer(String key, String... aliases) {
        JsonNode n = config.get(key);
        String found = key;
        for (int i = 0; (n == null || n.isNull()) && i < aliases.length; i++) n = config.get(found = aliases[i]);
        if (n == null || n.isNull()) throw error("missing key '" + key + "'");
        if (!n.canConvertToInt() || n.asInt() <= 0) {
            throw error("key '" + found + "' is " + n + ", expected a positive integer");
        }
        ModelSpecBounds.check(this, found, n.asInt());
        return n.asInt();
    }

    public int optInt(int fallback, String key) {
        return config.hasNonNull(key) ? integer(key) : fallback;
    }

    public double number(String key) {
        JsonNode n = config.get(key);
        if (n == null || !n.isNumber()) throw error("missing numeric key '" + key + "'");
        return n.asDouble();
    }

    /** {@code hidden / heads}, refused when heads does not divide hidden. */
    public int divide(int hidden, int heads, String hiddenKey, String headsKey) {
        if (hidden % heads != 0) {
            throw error(headsKey + " = " + heads + " does not divide "
                    + hiddenKey + " = " + hidden);
        }
        return hidden / heads;
    }

    /** Refuses a kv-head count that does not divide the head count. */
    public void checkGroups(int heads, int kvHeads, String key) {
        if (kvHeads <= 0 || heads % kvHeads != 0) {
            throw error(key + " = " + kvHeads
                    + " does not divide num_attention_heads = " + heads);
        }
    }
}
