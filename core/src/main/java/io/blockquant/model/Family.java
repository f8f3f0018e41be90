package io.blockquant.model;

import io.blockquant.model.falcon.FalconFamily;
import io.blockquant.model.llama.LlamaFamily;
import io.blockquant.model.opt.OptFamily;
import java.util.Arrays;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * The registry of model families: one line per family, naming its {@link FamilyDescriptor}. An enum so a
 * {@link ModelSpec} travels to executors by name; everything a family is lives in its descriptor's package.
 */
public enum Family {
    LLAMA(new LlamaFamily()),
    OPT(new OptFamily()),
    FALCON(new FalconFamily());

    private final FamilyDescriptor descriptor;

    Family(FamilyDescriptor descriptor) {
        this.descriptor = descriptor;
    }

    public FamilyDescriptor descriptor() {
        return descriptor;
    }

    /** The family that reads config.json's {@code model_type}, if any. */
    public static Optional<Family> reading(String modelType) {
        return Arrays.stream(values()).filter(f -> f.descriptor.reads(modelType)).findFirst();
    }

    /** The model types the registry reads, for an error message: {@code llama, mistral, ...}. */
    public static String supportedModelTypes() {
        return Arrays.stream(values()).flatMap(f -> f.descriptor.modelTypes().stream()).collect(Collectors.joining(", "));
    }
}
