package io.blockquant.eval;

import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import java.util.function.Supplier;

/**
 * What an executor JVM keeps between the tasks of an eval pass: the stem (norms, OPT positions: small) and
 * the block the current pass runs, so each is read once per executor and pass. One block at most: the
 * previous one is let go before the next is read, and the head pass lets go of the last.
 */
final class ExecutorParts {

    private static String stemKey;
    private static CausalLm stem;
    private static String blockKey;
    private static DecoderBlock block;

    private ExecutorParts() {}

    static synchronized CausalLm stem(String key, Supplier<CausalLm> load) {
        if (!key.equals(stemKey)) {
            stem = null;
            stemKey = null;
            stem = load.get();
            stemKey = key;
        }
        return stem;
    }

    static synchronized DecoderBlock block(String key, Supplier<DecoderBlock> load) {
        if (!key.equals(blockKey)) {
            dropBlock();
            block = load.get();
            blockKey = key;
        }
        return block;
    }

    static synchronized void dropBlock() {
        block = null;
        blockKey = null;
    }
}
