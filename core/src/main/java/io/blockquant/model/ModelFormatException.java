package io.blockquant.model;

/** A checkpoint, config or tokenizer that cannot be used as it is; the message names the file and key. */
public class ModelFormatException extends RuntimeException {
    public ModelFormatException(String message) {
        super(message);
    }

    public ModelFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
