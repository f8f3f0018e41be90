package io.blockquant.schedule;

import io.blockquant.model.ModelSpec;
import java.io.Serializable;

/**
 * The checkpoint a run quantizes, as executor tasks receive it: its folder and its spec, read from
 * {@code config.json} once on the driver (tasks load weights, never the config again).
 */
public record ModelRef(String dir, ModelSpec spec) implements Serializable {}
