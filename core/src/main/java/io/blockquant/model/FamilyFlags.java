package io.blockquant.model;

import java.io.Serializable;

/**
 * A family's own config.json settings, beside the shared fields of {@link ModelSpec} (OPT's pre/post
 * LayerNorm, Falcon's grouped layout). Only its family's package reads them.
 */
public interface FamilyFlags extends Serializable {}
