package io.blockquant.algo;

import io.blockquant.nn.DecoderBlock;
import java.util.Map;

/**
 * What a block calibration returns: the block as it is stored (norms and biases after any equivalent
 * transformation was folded in; its linear layers' weights already replaced by their dequantized values)
 * and, for every linear layer by module name ({@code self_attn.q_proj}), the quantized weight to store.
 */
public record CalibratedBlock(DecoderBlock block, Map<String, ? extends StoredWeight> layers) {}
