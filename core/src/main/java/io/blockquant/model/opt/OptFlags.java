package io.blockquant.model.opt;

import io.blockquant.model.FamilyFlags;
import io.blockquant.model.ModelSpec;

/**
 * OPT's own config.json settings.
 *
 * @param normBefore pre-LayerNorm (true for all but OPT-350m)
 * @param finalNorm  the decoder applies final_layer_norm before the head
 * @param projDim    word_embed_proj_dim (equal to hidden unless project_in/out exist)
 */
public record OptFlags(boolean normBefore, boolean finalNorm, int projDim) implements FamilyFlags {

    public static OptFlags of(ModelSpec spec) {
        return (OptFlags) spec.flags();
    }
}
