package io.blockquant.model;

import java.util.Map;

/**
 * Upper bounds on config.json's sizes, checked as each key is read: a value past them (num_hidden_layers =
 * 2147483647) would size plans and arrays in every JVM before any weight is read. Each bound is far above any
 * published model (Llama-3.1-405B: 126 layers, hidden 16384, intermediate 53248, 128 heads; Gemma: vocabulary
 * 256000), so only a broken or hostile file meets one.
 */
public final class ModelSpecBounds {

    private ModelSpecBounds() {}

    static final int MAX_LAYERS = 1024;
    static final int MAX_HEADS = 1024;
    static final int MAX_HIDDEN = 131_072;
    static final int MAX_INTERMEDIATE = 1 << 20;
    static final int MAX_HEAD_DIM = 1024;
    static final int MAX_VOCAB = 1 << 22;
    static final int MAX_POSITIONS = 1 << 24;
    /** One weight is one Java array on the executor: its elements must fit an int index. */
    static final long MAX_WEIGHT_ELEMENTS = Integer.MAX_VALUE - 8;

    /** Maximum by config key (families' aliases included). */
    static final Map<String, Integer> MAXIMA = Map.ofEntries(
            Map.entry("num_hidden_layers", MAX_LAYERS), Map.entry("n_layer", MAX_LAYERS),
            Map.entry("num_attention_heads", MAX_HEADS), Map.entry("n_head", MAX_HEADS),
            Map.entry("num_key_value_heads", MAX_HEADS), Map.entry("num_kv_heads", MAX_HEADS), Map.entry("n_head_kv", MAX_HEADS),
            Map.entry("hidden_size", MAX_HIDDEN), Map.entry("n_embed", MAX_HIDDEN),
            Map.entry("intermediate_size", MAX_INTERMEDIATE), Map.entry("ffn_dim", MAX_INTERMEDIATE),
            Map.entry("ffn_hidden_size", MAX_INTERMEDIATE),
            Map.entry("head_dim", MAX_HEAD_DIM),
            Map.entry("vocab_size", MAX_VOCAB),
            Map.entry("max_position_embeddings", MAX_POSITIONS));

    /** Refuses {@code value} of {@code key} above its bound, naming the key. */
    static void check(ModelSpecReader config, String key, int value) {
        Integer max = MAXIMA.get(key);
        if (max != null && value > max) {
            throw config.error("key '" + key + "' is " + value + ", more than " + max + " (the largest this job accepts; no "
                    + "published model comes near it): the config is broken");
        }
    }

    /** {@code partial_rotary_factor}: the share of a head's dimensions that RoPE rotates, in (0, 1]. */
    static double rotaryFraction(ModelSpecReader config, com.fasterxml.jackson.databind.JsonNode node) {
        if (node.isMissingNode() || node.isNull()) return 1.0;
        if (!node.isNumber() || !(node.asDouble() > 0 && node.asDouble() <= 1)) {
            throw config.error("key 'partial_rotary_factor' is " + node + ", expected a number in (0, 1]");
        }
        return node.asDouble();
    }

    /** The sizes together: each block weight must fit one Java array; heads × head_dim stays a sane width. */
    static void checkSpec(ModelSpecReader config, ModelSpec spec) {
        long widest = (long) Math.max(spec.hiddenSize(), spec.numHeads() * spec.headDim())
                * Math.max(spec.intermediateSize(), Math.max(spec.hiddenSize(), spec.numHeads() * spec.headDim()));
        if (widest > MAX_WEIGHT_ELEMENTS) {
            throw config.error("hidden_size " + spec.hiddenSize() + " with intermediate size " + spec.intermediateSize() + " and "
                    + spec.numHeads() + " heads of " + spec.headDim() + " make a " + widest
                    + "-element weight, more than one Java array holds (" + MAX_WEIGHT_ELEMENTS + ")");
        }
        if ((long) spec.numHeads() * spec.headDim() > MAX_HIDDEN) {
            throw config.error("num_attention_heads " + spec.numHeads() + " × head_dim " + spec.headDim() + " = "
                    + (long) spec.numHeads() * spec.headDim() + ", more than " + MAX_HIDDEN);
        }
    }
}
