package io.blockquant.quant;

import java.io.Serializable;

/**
 * What attention quantizes beside its linear layers, per head and per token (null: kept in float32):
 * queries and keys after RoPE, the operands of {@code Q·Kᵀ}, and values, the right operand of {@code P·V}, as
 * the OmniQuant reference's {@code QuantMatMul}s do (the probabilities P stay 16-bit there, and here). Keys
 * and values alone are what a serving engine's quantized KV cache holds.
 */
public record AttentionQuant(TokenQuant query, TokenQuant key, TokenQuant value) implements Serializable {

    public static final AttentionQuant NONE = new AttentionQuant(null, null, null);

    public boolean isNone() {
        return query == null && key == null && value == null;
    }
}
