package io.blockquant.export;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.SafetensorsWriter.Header;
import java.io.Serializable;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What an export writes, decided on the driver from the store's metadata alone, before any tensor is read:
 * every output tensor (its safetensors header entry and where its bytes come from), and the shards they go
 * into, split as Hugging Face's {@code save_pretrained} splits a state dict — so a shard task can write its
 * header first and stream the data after it.
 */
public final class ShardPlan {

    private ShardPlan() {}

    /** Hugging Face's default {@code max_shard_size}, "5GB". */
    public static final long DEFAULT_MAX_SHARD_BYTES = 5_000_000_000L;

    /** Where a planned tensor's bytes come from. */
    public sealed interface Source extends Serializable permits Layer, Stored {}

    /**
     * One of the tensors {@link GptqTensors} or {@link Fp8Tensors} make for quantized linear {@code layer}
     * (checkpoint name) from the rows of store module {@code module} of {@code block}.
     */
    public record Layer(int block, String module, String layer) implements Source {}

    /**
     * A full-precision stored tensor, held in {@code parts} values of store dtype {@code dtype} (several for an
     * embedding or head split along its rows), copied when the output dtype is the same, else converted.
     */
    public record Stored(int block, String module, String kind, String dtype, int parts) implements Source {}

    /** One tensor of the checkpoint. */
    public record Planned(Header header, Source source) implements Serializable {}

    /** One safetensors file: its name in the checkpoint folder and its tensors in file order. */
    public record Shard(int index, String file, List<Planned> tensors) implements Serializable {
        /** Bytes of tensor data (the file adds its header). */
        public long bytes() {
            long n = 0;
            for (Planned t : tensors) n += t.header().bytes();
            return n;
        }
    }

    /**
     * {@code tensors}, in order, split into shards of at most {@code maxBytes} bytes of data, as
     * {@code huggingface_hub.split_torch_state_dict_into_shards} splits: a tensor is never split; one larger than
     * the cap gets a shard of its own; a tensor that would tip the current shard over the cap starts the next one.
     * One shard is {@code model.safetensors}; several are {@code model-00001-of-0000N.safetensors}, ….
     */
    public static List<Shard> split(List<Planned> tensors, long maxBytes) {
        if (maxBytes <= 0) throw new IllegalArgumentException("the largest shard must be at least 1 byte, not " + maxBytes);
        List<List<Planned>> groups = new ArrayList<>();
        List<Planned> current = new ArrayList<>();
        long currentBytes = 0;
        for (Planned t : tensors) {
            long bytes = t.header().bytes();
            if (bytes > maxBytes) {
                groups.add(List.of(t));
                continue;
            }
            if (currentBytes + bytes > maxBytes) {
                groups.add(current);
                current = new ArrayList<>();
                currentBytes = 0;
            }
            current.add(t);
            currentBytes += bytes;
        }
        if (!current.isEmpty() || groups.isEmpty()) groups.add(current);
        List<Shard> shards = new ArrayList<>(groups.size());
        for (int i = 0; i < groups.size(); i++) {
            String file = groups.size() == 1 ? Checkpoint.SINGLE
                    : String.format(Locale.ROOT, "model-%05d-of-%05d.safetensors", i + 1, groups.size());
            shards.add(new Shard(i, file, List.copyOf(groups.get(i))));
        }
        return shards;
    }

    /**
     * {@code model.safetensors.index.json} of several shards, as {@code save_pretrained} writes it:
     * {@code {"metadata": {"total_size": <bytes of tensor data>}, "weight_map": {tensor: file, …}}}, names sorted.
     */
    public static String index(List<Shard> shards) {
        ObjectMapper json = new ObjectMapper();
        ObjectNode root = json.createObjectNode();
        long total = 0;
        Map<String, String> weightMap = new TreeMap<>();
        for (Shard s : shards) {
            total += s.bytes();
            for (Planned t : s.tensors()) weightMap.put(t.header().name(), s.file());
        }
        root.putObject("metadata").put("total_size", total);
        ObjectNode map = root.putObject("weight_map");
        weightMap.forEach(map::put);
        try {
            return json.writerWithDefaultPrettyPrinter().writeValueAsString(root) + "\n";
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d*)?|\\.\\d+)\\s*([kmgt]i?b|b)?", Pattern.CASE_INSENSITIVE);

    /**
     * A size as {@code --max-shard-size} takes it: {@code 5GB}, {@code 500MB} (KB, MB, GB, TB: powers of 1000,
     * as Hugging Face reads {@code max_shard_size}), {@code 2GiB} (KiB … TiB: powers of 1024), or plain bytes.
     */
    public static long parseSize(String text) {
        Matcher m = SIZE.matcher(text == null ? "" : text.trim());
        if (m.matches()) {
            String unit = m.group(2) == null ? "b" : m.group(2).toLowerCase(Locale.ROOT);
            int power = "bkmgt".indexOf(unit.charAt(0));
            BigDecimal base = BigDecimal.valueOf(unit.contains("i") ? 1024 : 1000);
            BigDecimal bytes = new BigDecimal(m.group(1)).multiply(base.pow(power)).setScale(0, RoundingMode.FLOOR);
            if (bytes.signum() > 0 && bytes.compareTo(BigDecimal.valueOf(Long.MAX_VALUE)) <= 0) return bytes.longValueExact();
        }
        throw new IllegalArgumentException("--max-shard-size '" + text + "' is not a size of at least 1 byte: expected e.g. 5GB, "
                + "500MB (KB, MB, GB, TB: powers of 1000), 2GiB (KiB, MiB, GiB, TiB: powers of 1024) or a number of bytes");
    }
}
