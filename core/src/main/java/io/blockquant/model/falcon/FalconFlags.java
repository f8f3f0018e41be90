package io.blockquant.model.falcon;

import io.blockquant.model.FamilyFlags;
import io.blockquant.model.ModelSpec;

/**
 * Falcon's own config.json settings.
 *
 * @param newLayout  the grouped qkv layout of Falcon-40B/180B (new_decoder_architecture)
 * @param layerNorms 1 (one input_layernorm shared by attention and MLP) or 2 (ln_attn, ln_mlp)
 */
public record FalconFlags(boolean newLayout, int layerNorms) implements FamilyFlags {

    public static FalconFlags of(ModelSpec spec) {
        return (FalconFlags) spec.flags();
    }
}
