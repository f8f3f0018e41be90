package io.blockquant.tensor;

import io.blockquant.quant.TokenQuant;
import io.blockquant.quant.TokenQuantBackward;

/**
 * The backward of {@link ForwardOps}' norms, attention pieces and activations, for block-wise training
 * (OmniQuant). Each takes the forward's input (or output where cheaper) and the upstream gradient dy of the
 * same shape as the forward's output, and returns the gradient(s) of the forward's input(s).
 */
public interface GradientOps {

    /** Backward of {@link ForwardOps#rmsNorm}: {@code {dx, dWeight}}; dWeight summed over rows. */
    Tensor[] rmsNormBackward(Tensor x, Tensor weight, float eps, Tensor dy);

    /** Backward of {@link ForwardOps#layerNorm}: {@code {dx, dWeight, dBias}}; dWeight and dBias summed over rows. */
    Tensor[] layerNormBackward(Tensor x, Tensor weight, float eps, Tensor dy);

    /**
     * Backward of {@link ForwardOps#causalSoftmax} from its output {@code probs}: the gradient of the raw scores,
     * {@code scale·P⊙(dP − Σ_k P_k·dP_k)} per row (zero above the diagonal, where P is zero).
     */
    Tensor causalSoftmaxBackward(Tensor probs, Tensor dProbs, float scale);

    /** Backward of {@link ForwardOps#rope}: the rotation's transpose, i.e. RoPE with the angles negated. */
    Tensor ropeBackward(Tensor dy, float[] invFreq);

    /** Backward of {@link ForwardOps#activate}: {@code dy ⊙ f'(x)} from the activation's input x. */
    Tensor activationBackward(Tensor x, Tensor dy, Activation activation);

    /**
     * Backward of {@link ForwardOps#gatedActivation} from its inputs: {@code {dGate, dUp}} =
     * {@code {act'(gate) ⊙ (dy ⊙ up), dy ⊙ act(gate)}}, the same float32 products as the unfused ops'.
     */
    Tensor[] gatedActivationBackward(Tensor gate, Tensor up, Tensor dy, Activation activation);

    /** Column sums of a 2-D tensor, {@code [cols]} (bias gradients). */
    Tensor columnSums(Tensor a);

    /**
     * Backward of {@link ForwardOps#repeatHeads}: {@code [batch·kvHeads·groups, seq, d] -> [batch·kvHeads, seq, d]},
     * summing the gradients of the query heads that share a key/value head.
     */
    Tensor sumRepeatedHeads(Tensor x, int batch, int kvHeads, int groups);

    /**
     * Backward of {@link ForwardOps#selectColumns}: {@code out [rows, width]} with {@code out[r, columns[j]] += x[r, j]}
     * (a column picked twice gets both gradients, summed in the order of j).
     */
    Tensor scatterAddColumns(Tensor x, int[] columns, int width);

    /**
     * Backward of {@link ForwardOps#scaleShiftLinear} from the gradients of W2 and b2 ({@code dB} null when there is
     * no b2): {@code {dColScale, dColShift, dRowFactor, dRowShift}}, each null where its vector was null.
     */
    Tensor[] scaleShiftLinearBackward(Tensor w, Tensor b, Tensor colScale, Tensor colShift, Tensor rowFactor, Tensor rowShift,
                                      Tensor dW, Tensor dB);

    /**
     * Backward of {@link FakeQuantOps#fakeQuantizeClipped} (OmniQuant eq. 2–3 with the straight-through round):
     * {@code {dW, dGamma, dBeta}}.
     */
    Tensor[] fakeQuantizeClippedBackward(Tensor w, Tensor gamma, Tensor beta, int group, int bits, Tensor dOut);

    /**
     * Backward of {@link FakeQuantOps#fakeQuantizeTokens(Tensor, TokenQuant)} at its input {@code x}, rows of the last
     * dimension, as the OmniQuant reference's autograd takes it ({@link TokenQuantBackward}): straight through inside
     * the clamp range, and each row's dynamic scale's gradient into the row's extreme elements. {@code q} null: {@code dy}.
     */
    Tensor fakeQuantizeTokensBackward(Tensor x, Tensor dy, TokenQuant q);
}
