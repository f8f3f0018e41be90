package io.blockquant.store;

import java.io.Serializable;
import java.util.Objects;

/**
 * What quantizing one linear layer did, measured on the calibration inputs {@code X}:
 * {@code relativeOutputError} = ‖XWᵀ − XŴᵀ‖ / ‖XWᵀ‖, {@code gptqLoss} the solver's own objective (NaN where
 * the method has none), {@code calibrationTokens} the number of rows of {@code X}.
 */
public record LayerError(int block, String module, double relativeOutputError, double gptqLoss,
                         long calibrationTokens) implements Serializable {

    public LayerError {
        Objects.requireNonNull(module, "module");
        String problem = io.blockquant.model.PathSegment.problem(module);
        if (problem != null) {
            throw new IllegalArgumentException("block " + block + ": layer error module name '" + module + "' " + problem
                    + " (expected a plain module name)");
        }
        if (calibrationTokens < 0) {
            throw new IllegalArgumentException("block " + block + " module " + module + ": calibrationTokens "
                    + calibrationTokens + " is negative");
        }
    }
}
