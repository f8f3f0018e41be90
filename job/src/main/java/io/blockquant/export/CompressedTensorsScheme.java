package io.blockquant.export;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.store.StoreTensors;
import org.apache.hadoop.fs.Path;

/**
 * The compressed-tensors scheme a store exports as, chosen from the store itself (its quantized layers' metadata
 * and its recipe), with the {@code quantization_config} vLLM's compressed-tensors loader and transformers'
 * {@code CompressedTensorsConfig} read:
 *
 * <table>
 *   <tr><th>store</th><th>format</th><th>weights</th><th>input_activations</th></tr>
 *   <tr><td>INT 2..8 bits, no activation quantization</td><td>pack-quantized</td><td>int, group or channel, sym or asym</td><td>null</td></tr>
 *   <tr><td>INT8 symmetric per channel, {@code --abits 8}</td><td>int-quantized</td><td>int 8, channel, sym</td><td>int 8, token, dynamic, sym</td></tr>
 *   <tr><td>FP8 E4M3 per channel</td><td>float-quantized</td><td>float 8, channel</td><td>null, or float 8 token dynamic with {@code --aformat fp8e4m3}</td></tr>
 *   <tr><td>FP4 E2M1, M1 (power-of-two) scales</td><td>mxfp4-pack-quantized</td><td>float 4, group 32</td><td>null</td></tr>
 *   <tr><td>FP4 E2M1, other scales</td><td>nvfp4-pack-quantized</td><td>float 4, tensor_group 16</td><td>null</td></tr>
 * </table>
 *
 * Every linear of the blocks is one {@code config_group} targeting {@code Linear}; {@code lm_head} is ignored (kept
 * in the source dtype). A store with {@code --kv-bits} gets a {@code kv_cache_scheme} ({@link #kvCacheScheme}).
 */
record CompressedTensorsScheme(LayerLayout layout, ObjectNode config) {

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * The scheme for a store whose quantized layers all look like {@code first} (the export checks they agree),
     * with recipe {@code recipe}; a store no scheme holds is refused naming the setting.
     */
    static CompressedTensorsScheme of(StoreTensors.Info first, JsonNode recipe, Path store) {
        CompressedTensorsScheme s = weightsAndInputs(first, recipe, store);
        s.config().set("kv_cache_scheme", kvCacheScheme(recipe));
        return s;
    }

    /**
     * The store's KV cache ({@code --kv-bits}) as compressed-tensors' {@code kv_cache_scheme}: keys and values
     * quantized dynamically per token (per head: each head's row has its own scale), INT asymmetric or FP8 E4M3
     * symmetric; null when the store keeps them in full precision. No k_scale/v_scale tensors are written: the
     * scales are computed at run time, as the store's model was evaluated.
     */
    static JsonNode kvCacheScheme(JsonNode recipe) {
        int bits = recipe.path("kv_bits").asInt(0);
        if (bits == 0) return com.fasterxml.jackson.databind.node.NullNode.getInstance();
        boolean fp8 = "fp8".equals(recipe.path("kv_format").asText("int"));
        ObjectNode kv = args(bits, fp8 ? "float" : "int", fp8, "token", null);
        kv.put("dynamic", true);
        return kv;
    }

    private static CompressedTensorsScheme weightsAndInputs(StoreTensors.Info first, JsonNode recipe, Path store) {
        int abits = recipe.path("abits").asInt(0);
        if (abits != 0 && recipe.path("quant_attn").asBoolean(false)) {
            throw new IllegalArgumentException(store + ": the store quantizes attention's queries, keys and values (quant_attn); "
                    + "compressed-tensors has no place for quantized queries: quantize with --quant-attn=false (and --kv-bits for K and V)");
        }
        boolean asymActs = recipe.path("asym_acts").asBoolean(false);
        String aformat = recipe.path("aformat").asText("int");
        String dtype = first.dtype(), format = first.format();
        boolean actOrder = recipe.path("act_order").asBoolean(false);
        if (dtype.equals("fp8-e4m3")) {
            return new CompressedTensorsScheme(new Fp8Tensors(), Fp8Config.of(recipe, store));
        }
        if (dtype.startsWith("fp")) {
            if (!dtype.startsWith("fp4")) throw new IllegalArgumentException(store + ": " + dtype + " weights have no compressed-tensors scheme here");
            if (abits != 0) {
                throw new IllegalArgumentException(store + ": FP4 weights with " + activations(abits, aformat) + " activations; the compressed-tensors "
                        + "FP4 schemes exported here are weight-only (NVFP4A16, MXFP4A16): quantize with --abits 16");
            }
            boolean mx = format.endsWith("/m1");
            ObjectNode w = args(4, "float", true, mx ? "group" : "tensor_group", mx ? 32 : 16);
            return new CompressedTensorsScheme(new Fp4Tensors(mx), config(mx ? "mxfp4-pack-quantized" : "nvfp4-pack-quantized", w, null));
        }
        boolean sym = format.equals("int-sym");
        Integer group = first.groupSize() > 0 ? first.groupSize() : null;
        if (abits == 0) {
            ObjectNode w = args(first.bits(), "int", sym, group == null ? "channel" : "group", group);
            if (actOrder) w.put("actorder", "group");
            return new CompressedTensorsScheme(new PackedIntTensors(false, actOrder), config("pack-quantized", w, null));
        }
        if (abits == 8 && aformat.equals("int") && first.bits() == 8) {
            ObjectNode a = args(8, "int", !asymActs, "token", null);
            a.put("dynamic", true);
            return new CompressedTensorsScheme(new PackedIntTensors(true, false),
                    config("int-quantized", args(8, "int", true, "channel", null), a));
        }
        throw new IllegalArgumentException(store + ": INT" + first.bits() + " weights with " + activations(abits, aformat)
                + " activations; compressed-tensors schemes here: weight-only INT (pack-quantized) or INT8 weights with INT8 "
                + "activations (int-quantized W8A8)");
    }

    private static String activations(int abits, String aformat) {
        return aformat.equals("int") ? "INT" + abits : "FP8 " + aformat.toUpperCase(java.util.Locale.ROOT);
    }

    /** compressed-tensors' {@code QuantizationArgs} as JSON. */
    static ObjectNode args(int bits, String type, boolean symmetric, String strategy, Integer groupSize) {
        ObjectNode a = JSON.createObjectNode();
        a.put("num_bits", bits);
        a.put("type", type);
        a.put("symmetric", symmetric);
        if (groupSize == null) a.putNull("group_size"); else a.put("group_size", groupSize);
        a.put("strategy", strategy);
        a.putNull("block_structure");
        a.put("dynamic", false);
        a.putNull("actorder");
        return a;
    }

    /** One config group of {@code weights} (and {@code input}) over every Linear, {@code lm_head} ignored. */
    static ObjectNode config(String format, ObjectNode weights, ObjectNode input) {
        ObjectNode group = JSON.createObjectNode();
        group.putArray("targets").add("Linear");
        group.set("weights", weights);
        if (input == null) group.putNull("input_activations"); else group.set("input_activations", input);
        group.putNull("output_activations");
        group.put("format", format);
        ObjectNode q = JSON.createObjectNode();
        q.put("quant_method", "compressed-tensors");
        q.put("format", format);
        q.put("quantization_status", "compressed");
        q.putObject("config_groups").set("group_0", group);
        q.putArray("ignore").add("lm_head");
        q.putNull("kv_cache_scheme");
        return q;
    }

    /** The float-quantized FP8 config (per-channel E4M3 weights, optional dynamic per-token E4M3 activations). */
    static final class Fp8Config {
        private Fp8Config() {}

        static ObjectNode of(JsonNode recipe, Path store) {
            int abits = recipe.path("abits").asInt(0);
            String aformat = recipe.path("aformat").asText("int");
            if (abits != 0 && !(abits == 8 && aformat.equals("e4m3"))) {
                throw new IllegalArgumentException(store + ": the store quantizes activations as " + activations(abits, aformat)
                        + "; the float-quantized layout takes weight-only FP8 or dynamic per-token FP8 E4M3 activations");
            }
            ObjectNode input = null;
            if (abits == 8) {
                input = args(8, "float", true, "token", null);
                input.put("dynamic", true);
            }
            return config("float-quantized", args(8, "float", true, "channel", null), input);
        }
    }
}
