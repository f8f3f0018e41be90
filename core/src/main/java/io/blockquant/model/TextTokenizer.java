package io.blockquant.model;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import java.io.IOException;
import java.io.InputStream;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * A model's {@code tokenizer.json}, read with DJL's binding of Hugging Face tokenizers (the same Rust
 * code that Transformers uses, so token ids match the reference exactly). No special tokens are added
 * and nothing is truncated: the evaluation protocol tokenizes a whole file as one string.
 */
public final class TextTokenizer implements AutoCloseable {

    private final HuggingFaceTokenizer tokenizer;
    private final String source;

    private TextTokenizer(HuggingFaceTokenizer tokenizer, String source) {
        this.tokenizer = tokenizer;
        this.source = source;
    }

    public static TextTokenizer load(Path modelDir, Configuration conf) {
        Path file = new Path(modelDir, "tokenizer.json");
        Map<String, String> options = Map.of("addSpecialTokens", "false", "truncation", "false",
                "padding", "false", "modelMaxLength", String.valueOf(Integer.MAX_VALUE));
        try {
            FileSystem fs = file.getFileSystem(conf);
            if (!fs.exists(file)) throw new ModelFormatException(file + ": not found (the model folder needs tokenizer.json)");
            try (InputStream in = fs.open(file)) {
                return new TextTokenizer(HuggingFaceTokenizer.newInstance(in, options), file.toString());
            }
        } catch (IOException | RuntimeException e) {
            if (e instanceof ModelFormatException) throw (ModelFormatException) e;
            throw new ModelFormatException(file + ": cannot load the tokenizer (" + e.getMessage() + ")", e);
        }
    }

    /** Token ids of the whole text. */
    public int[] encode(String text) {
        Encoding enc = tokenizer.encode(text, false, false);
        long[] ids = enc.getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) out[i] = Math.toIntExact(ids[i]);
        return out;
    }

    public String decode(int[] ids) {
        long[] l = new long[ids.length];
        for (int i = 0; i < ids.length; i++) l[i] = ids[i];
        return tokenizer.decode(l);
    }

    public String source() {
        return source;
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
