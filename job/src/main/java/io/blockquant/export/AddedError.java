package io.blockquant.export;

import java.io.Serializable;

/**
 * What re-expressing one layer's scales in a checkpoint layout cost, as a shard task reports it to the driver:
 * {@code errorSq = Σ(W_store − W_exported)²}, {@code weightSq = ΣW_store²} (public for Spark's Kryo registration).
 */
public record AddedError(String layer, double errorSq, double weightSq) implements Serializable {}
