package io.blockquant.cli;

import io.blockquant.bench.SyntheticCheckpoint;
import io.blockquant.bench.SyntheticCheckpoint.Shape;
import io.blockquant.bench.SyntheticCheckpoint.TensorPlan;
import java.util.Arrays;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code synth}: a Llama checkpoint with real widths, few blocks and seeded random weights (no Spark). */
@Command(name = "synth", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Write a Llama checkpoint with real widths, few blocks and seeded random weights.",
            "For tests and benchmarks at real width: a Hugging Face folder with config.json, bf16 shards "
                    + "model-0000k-of-0000n.safetensors with their index, and the tokenizer files of --tokenizer.",
            "Linear weights are uniform with standard deviation --std, norm weights 1. Each tensor depends only on "
                    + "--seed and its name: blocks 0..k are the same whatever --blocks. Tensors are generated and written "
                    + "in 16 MiB chunks, so memory stays small whatever the shape.",
            "Example: blockquant synth --shape llama-3-8b --blocks 2 --out /tmp/llama3-8b-2b",
            ""})
public final class SynthCommand implements Callable<Integer> {

    @Option(names = "--shape", paramLabel = "NAME", description = "preset: llama-2-7b, llama-2-70b, llama-3-8b, llama-3-70b, llama-3-405b (default: ${DEFAULT-VALUE})")
    String shape = "llama-3-8b";

    @Option(names = "--blocks", paramLabel = "N", description = "decoder blocks to write (num_hidden_layers) (default: ${DEFAULT-VALUE})")
    int blocks = 2;

    @Option(names = "--out", paramLabel = "DIR", required = true, description = "checkpoint folder to write: new or empty (file:, hdfs:, s3a:); never overwritten")
    String out;

    @Option(names = "--seed", paramLabel = "N", description = "seed of the weights (default: ${DEFAULT-VALUE})")
    long seed = 0;

    @Option(names = "--std", paramLabel = "X", description = "standard deviation of the linear weights (default: ${DEFAULT-VALUE}, Hugging Face's initializer_range)")
    double std = SyntheticCheckpoint.DEFAULT_STD;

    @Option(names = "--hidden", paramLabel = "N", description = "override hidden_size")
    Integer hidden;

    @Option(names = "--heads", paramLabel = "N", description = "override num_attention_heads (must divide the hidden size)")
    Integer heads;

    @Option(names = "--kv-heads", paramLabel = "N", description = "override num_key_value_heads (must divide the heads)")
    Integer kvHeads;

    @Option(names = "--intermediate", paramLabel = "N", description = "override intermediate_size (the MLP width)")
    Integer intermediate;

    @Option(names = "--vocab", paramLabel = "N", description = "override vocab_size (at least the tokenizer's ids)")
    Integer vocab;

    @Option(names = "--shard-size", paramLabel = "SIZE", description = "most tensor bytes per shard, e.g. 5GB, 500MB, 2GiB; a larger tensor gets a shard of its own (default: ${DEFAULT-VALUE}, as Hugging Face)")
    String shardSize = "5GB";

    @Option(names = "--tokenizer", paramLabel = "DIR", description = "folder whose tokenizer.json (and tokenizer_config.json) are copied (default: ${DEFAULT-VALUE})")
    String tokenizer = Defaults.model();

    @Option(names = "--threads", paramLabel = "N", description = "threads generating weights ahead of the writer, 16 MiB of heap each (default: the number of cores, at most 4)")
    Integer threads;

    @Override
    public Integer call() {
        Shape s = shape();
        if (blocks <= 0) throw new IllegalArgumentException("--blocks must be at least 1, got " + blocks);
        if (!(std > 0) || !Double.isFinite(std)) throw new IllegalArgumentException("--std must be positive, got " + std);
        if (threads != null && threads <= 0) throw new IllegalArgumentException("--threads must be at least 1, got " + threads);
        SyntheticCheckpoint.Settings settings = SyntheticCheckpoint.Settings.of(s, blocks).seed(seed).std(std)
                .shardBytes(parseSize(shardSize)).tokenizerDir(new Path(tokenizer));
        if (threads != null) settings = settings.threads(threads);

        SyntheticCheckpoint.Result r = SyntheticCheckpoint.write(new Path(out), new Configuration(), settings, new SyntheticCheckpoint.Progress() {
            @Override
            public void started(Path dir, int tensors, int shards, long bytes) {
                System.err.printf(Locale.ROOT, "synth: %s: hidden %d, %d heads / %d kv heads × %d, MLP %d, vocab %d; %d blocks, seed %d,"
                                + " std %s -> %s: %d tensors, %s in %d shard%s%n", s.name(), s.hidden(), s.heads(),
                        s.kvHeads(), s.headDim(), s.intermediate(), s.vocab(), blocks, seed, std, dir,
                        tensors, SyntheticCheckpoint.human(bytes), shards, shards == 1 ? "" : "s");
            }

            @Override
            public void tensorWritten(TensorPlan t, int index, int count, String shard, double seconds, long done, long all) {
                if (t.norm()) return; // a norm vector is a few kB: not worth a line
                System.err.printf(Locale.ROOT, "  [%3d/%d] %-44s %-14s %9s %6.0f MB/s  %s  %3.0f%%%n", index + 1, count,
                        t.name(), Arrays.toString(t.shape()), SyntheticCheckpoint.human(t.bytes()),
                        t.bytes() / 1e6 / Math.max(seconds, 1e-9), shard, 100.0 * done / all);
            }
        });
        System.out.printf(Locale.ROOT, "synthetic %s checkpoint written to %s: %d blocks, %,d parameters, %s of bf16 tensors in %d shard%s"
                        + " (%s with config, index and tokenizer), %.1f s (%.0f MB/s)%n", s.name(), r.dir(), blocks, r.parameters(),
                SyntheticCheckpoint.human(r.tensorBytes()), r.shards(), r.shards() == 1 ? "" : "s", SyntheticCheckpoint.human(r.folderBytes()),
                r.seconds(), r.tensorBytes() / 1e6 / r.seconds());
        return 0;
    }

    /** The preset with the dimensions given on the command line. */
    private Shape shape() {
        Shape base = SyntheticCheckpoint.preset(shape);
        try {
            return base.with(hidden, heads, kvHeads, intermediate, vocab);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(base.name() + " with the given overrides: " + e.getMessage(), e);
        }
    }

    private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([a-z]*)");

    /** "5GB" = 5·10^9 bytes as Hugging Face counts; KiB, MiB, GiB binary; a plain number is bytes. */
    public static long parseSize(String text) {
        Matcher m = SIZE.matcher(text.trim().toLowerCase(Locale.ROOT));
        long unit = -1;
        if (m.matches()) {
            unit = switch (m.group(2)) {
                case "", "b" -> 1L;
                case "kb" -> 1_000L;
                case "mb" -> 1_000_000L;
                case "gb" -> 1_000_000_000L;
                case "kib" -> 1L << 10;
                case "mib" -> 1L << 20;
                case "gib" -> 1L << 30;
                default -> -1L;
            };
        }
        double bytes = unit < 0 ? 0 : Double.parseDouble(m.group(1)) * unit;
        if (unit < 0 || bytes < 1 || bytes > Long.MAX_VALUE / 2) {
            throw new IllegalArgumentException("--shard-size '" + text + "': expected a positive size with an optional unit"
                    + " (B, kB, MB, GB, KiB, MiB, GiB), e.g. 5GB");
        }
        return (long) bytes;
    }
}
