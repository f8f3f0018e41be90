package io.blockquant.eval;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.UUID;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileContext;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Options;
import org.apache.hadoop.fs.Path;

/**
 * A store's measured perplexity, {@code STORE/eval.json}: what {@code quantize}'s final eval and {@code eval --store}
 * write and what {@code report} shows. Written under a temporary name and renamed over the old one (atomic on
 * HDFS and local disks), so a reader sees the previous record or the new one, never half of one.
 *
 * @param ppl         perplexity
 * @param text        the evaluation text file
 * @param seqlen      tokens per window
 * @param windows     windows scored
 * @param tokens      tokens of the text
 * @param scoredTokens tokens whose NLL counts (seqlen − 1 per window)
 * @param nllMean     mean NLL
 * @param seconds     wall time of the measurement
 * @param measuredBy  {@code quantize} or {@code eval --store}
 */
public record EvalRecord(double ppl, String text, int seqlen, int windows, int tokens, long scoredTokens, double nllMean,
                         double seconds, String measuredBy) {

    public static final String FILE = "eval.json";

    /** The protocol in words, as docs/eval.md states it. */
    public String protocol() {
        return "consecutive windows of " + seqlen + " tokens (remainder dropped), ppl = exp(mean NLL of tokens 1.." + (seqlen - 1)
                + " of every window), no special tokens";
    }

    public String toJson() {
        ObjectMapper json = new ObjectMapper();
        ObjectNode n = json.createObjectNode();
        n.put("ppl", ppl);
        n.put("text", text);
        n.put("protocol", protocol());
        n.put("seqlen", seqlen);
        n.put("windows", windows);
        n.put("tokens", tokens);
        n.put("scored_tokens", scoredTokens);
        n.put("nll_mean", nllMean);
        n.put("seconds", Math.round(seconds * 100) / 100.0);
        n.put("measured_by", measuredBy);
        n.put("created", Instant.now().toString());
        try {
            return json.writerWithDefaultPrettyPrinter().writeValueAsString(n) + "\n";
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Writes {@code STORE/eval.json}, replacing an earlier one in one rename. */
    public void writeTo(String store, Configuration conf) {
        Path target = new Path(store, FILE);
        Path tmp = new Path(store, "." + FILE + ".tmp-" + UUID.randomUUID());
        try {
            FileSystem fs = target.getFileSystem(conf);
            try (OutputStream o = fs.create(tmp, false)) {
                o.write(toJson().getBytes(StandardCharsets.UTF_8));
            }
            try {
                FileContext.getFileContext(fs.getUri(), conf).rename(fs.makeQualified(tmp), fs.makeQualified(target), Options.Rename.OVERWRITE);
            } finally {
                if (fs.exists(tmp)) fs.delete(tmp, false);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(target + ": cannot write the perplexity record (" + e.getMessage() + ")", e);
        }
    }
}
