package io.blockquant.cli;

import java.util.Map;
import picocli.CommandLine.Option;

/**
 * The flags of activation quantization beyond {@code --abits} that {@code quantize} and {@code eval} share: the
 * asymmetric per-token rule, quantized attention and the KV cache. Declared once here (a picocli mixin); their values
 * go, as text, to the one settings parser ({@code QuantizeSettings.parse}).
 */
final class AttentionQuantOptions {

    @Option(names = "--asym-acts", arity = "0..1", fallbackValue = "true", paramLabel = "true|false", description = "asymmetric per-token INT "
            + "activations (min-max with a zero point, the OmniQuant reference's); false: symmetric absmax (default: on below 8 activation bits)")
    String asymActs;

    @Option(names = "--quant-attn", arity = "0..1", fallbackValue = "true", paramLabel = "true|false", description = "also quantize attention's "
            + "queries, keys (after RoPE) and values per head and token at --abits, as the reference's QuantMatMul (default: on below 8 activation bits)")
    String quantAttn;

    @Option(names = "--kv-bits", paramLabel = "8|4", description = "KV cache: keys (after RoPE) and values quantized per head and token at "
            + "8 or 4 bits, whatever --abits says; 16 = off (default: 16)")
    String kvBits;

    @Option(names = "--kv-format", description = "KV cache format: int (asymmetric) or fp8 (E4M3, needs --kv-bits 8) (default: int)")
    String kvFormat;

    /** The flags given, as the settings parser's keys. */
    void putGiven(Map<String, String> keys) {
        if (asymActs != null) keys.put("asym-acts", asymActs);
        if (quantAttn != null) keys.put("quant-attn", quantAttn);
        if (kvBits != null) keys.put("kv-bits", kvBits);
        if (kvFormat != null) keys.put("kv-format", kvFormat);
    }

    /** Whether a KV cache was asked for ({@code --kv-bits} below 16; a bad value is the parser's to name). */
    boolean kvCacheAsked() {
        return kvBits != null && !kvBits.trim().equals("16");
    }
}
