package io.blockquant.model;

import io.blockquant.tensor.Activation;
import java.io.Serializable;

/**
 * Everything the forward pass needs to know about a model's shape, read from {@code config.json} by its
 * family's {@link FamilyDescriptor#spec}. The fields are those every family has (a family without one keeps
 * a neutral value, documented per field); a family's own settings are its {@link #flags()}.
 *
 * @param qkvBias    q/k/v projections carry biases (OPT, Qwen2, Llama with attention_bias, Falcon with bias)
 * @param outBias    the attention output projection carries a bias
 * @param mlpBias    the MLP projections carry biases
 * @param invFreq    RoPE inverse frequencies for the rotary dims (null without rotary positions: OPT)
 * @param flags      the family's own settings, null when it has none (Llama)
 */
public record ModelSpec(
        Family family,
        String modelType,
        int hiddenSize,
        int numLayers,
        int numHeads,
        int numKvHeads,
        int headDim,
        int intermediateSize,
        int vocabSize,
        int maxPositions,
        float normEps,
        Activation activation,
        boolean qkvBias,
        boolean outBias,
        boolean mlpBias,
        boolean tieWordEmbeddings,
        float[] invFreq,
        FamilyFlags flags) implements Serializable {

    public int kvGroups() {
        return numHeads / numKvHeads;
    }

    public String describe() {
        return String.format("%s (%s): %d blocks, hidden %d, %d heads / %d kv heads × %d, MLP %d, vocab %d",
                family, modelType, numLayers, hiddenSize, numHeads, numKvHeads, headDim, intermediateSize, vocabSize);
    }
}
