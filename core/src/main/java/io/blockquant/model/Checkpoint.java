package io.blockquant.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * A Hugging Face checkpoint folder: {@code config.json} and either one {@code model.safetensors} or shards
 * listed by {@code model.safetensors.index.json}. Opening checks that every shard the index names exists; a
 * shard's header (up to 100 MB in a real checkpoint) is read and checked only when one of its tensors is first
 * asked for, so a JVM that needs one block's weights parses only the shards that hold them. Tensor data is read
 * only when asked for.
 */
public final class Checkpoint implements WeightSource, Closeable {

    public static final String INDEX = "model.safetensors.index.json";
    public static final String SINGLE = "model.safetensors";

    private final Path dir;
    private final FileSystem fs;
    /** Tensor name → shard file name, from the index (or the single file's header). */
    private final Map<String, String> tensorToShard;
    /** Shards opened so far, by file name: a shard's header is parsed on first use ({@link #shard}). */
    private final Map<String, SafetensorsFile> shards;
    private final Path index;

    private Checkpoint(Path dir, FileSystem fs, Map<String, String> tensorToShard, Map<String, SafetensorsFile> shards, Path index) {
        this.dir = dir;
        this.fs = fs;
        this.tensorToShard = tensorToShard;
        this.shards = shards;
        this.index = index;
    }

    public static Checkpoint open(String dir) {
        return open(new Path(dir), new Configuration());
    }

    public static Checkpoint open(Path dir, Configuration conf) {
        FileSystem fs;
        try {
            fs = dir.getFileSystem(conf);
            if (!fs.exists(dir)) throw new ModelFormatException(dir + ": model folder not found");
            Path index = new Path(dir, INDEX);
            if (fs.exists(index)) return openSharded(dir, fs, index);
            Path single = new Path(dir, SINGLE);
            if (fs.exists(single)) {
                SafetensorsFile file = SafetensorsFile.open(fs, single);
                Map<String, String> byTensor = new LinkedHashMap<>();
                file.entries().keySet().forEach(name -> byTensor.put(name, SINGLE));
                Map<String, SafetensorsFile> shards = new TreeMap<>();
                shards.put(SINGLE, file);
                return new Checkpoint(dir, fs, byTensor, shards, null);
            }
        } catch (IOException e) {
            throw new ModelFormatException(dir + ": cannot list the model folder (" + e.getMessage() + ")", e);
        }
        throw new ModelFormatException(dir + ": holds neither " + SINGLE + " nor " + INDEX);
    }

    private static Checkpoint openSharded(Path dir, FileSystem fs, Path index) throws IOException {
        JsonNode weightMap;
        try (InputStream in = fs.open(index)) {
            JsonNode root = new ObjectMapper().readTree(in);
            weightMap = root == null ? null : root.get("weight_map");
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new ModelFormatException(index + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        }
        if (weightMap == null || !weightMap.isObject()) {
            throw new ModelFormatException(index + ": missing the 'weight_map' object");
        }
        Map<String, String> byTensor = new LinkedHashMap<>();
        java.util.Set<String> checked = new java.util.HashSet<>();
        for (var it = weightMap.fields(); it.hasNext(); ) {
            var e = it.next();
            if (!e.getValue().isTextual()) {
                throw new ModelFormatException(index + ": weight_map entry for tensor '" + e.getKey() + "' is "
                        + e.getValue() + ", expected a shard file name");
            }
            String shardName = e.getValue().asText();
            String problem = PathSegment.problem(shardName);
            if (problem != null) {
                throw new ModelFormatException(index + ": shard name '" + shardName + "' for tensor '"
                        + e.getKey() + "' " + problem + "; it must be a file name inside the model folder");
            }
            if (checked.add(shardName) && !fs.exists(new Path(dir, shardName))) {
                throw new ModelFormatException(index + ": names shard '" + shardName + "' (for tensor '"
                        + e.getKey() + "'), which is missing from " + dir);
            }
            byTensor.put(e.getKey(), shardName);
        }
        return new Checkpoint(dir, fs, byTensor, new TreeMap<>(), index);
    }

    /**
     * The shard {@code name}, its header read and checked on first use: every tensor the index places in it must
     * be there.
     */
    private synchronized SafetensorsFile shard(String name) {
        SafetensorsFile shard = shards.get(name);
        if (shard != null) return shard;
        shard = SafetensorsFile.open(fs, new Path(dir, name));
        for (Map.Entry<String, String> e : tensorToShard.entrySet()) {
            if (e.getValue().equals(name) && !shard.entries().containsKey(e.getKey())) {
                try {
                    shard.close();
                } catch (IOException ignored) {
                    // the index error below is the one to report
                }
                throw new ModelFormatException(index + ": places tensor '" + e.getKey() + "' in " + name
                        + ", but that shard does not hold it");
            }
        }
        shards.put(name, shard);
        return shard;
    }

    private static void closeAll(Map<String, SafetensorsFile> shards) {
        for (SafetensorsFile f : shards.values()) {
            try {
                f.close();
            } catch (IOException ignored) {
                // closing on an error path
            }
        }
    }

    public Path dir() {
        return dir;
    }

    public FileSystem fileSystem() {
        return fs;
    }

    @Override
    public boolean has(String tensor) {
        return tensorToShard.containsKey(tensor);
    }

    @Override
    public java.util.Set<String> tensorNames() {
        return tensorToShard.keySet();
    }

    public SafetensorsFile.Entry entry(String tensor) {
        return fileOf(tensor).entry(tensor);
    }

    /**
     * The tensor as float32, checked against the shape the model spec expects and for NaN/Inf
     * (a non-finite weight would silently poison every block after it).
     */
    @Override
    public float[] readFloats(String tensor, long... expectedShape) {
        SafetensorsFile file = fileOf(tensor);
        SafetensorsFile.Entry e = file.entry(tensor);
        if (expectedShape.length > 0 && !Arrays.equals(e.shape(), expectedShape)) {
            throw new ModelFormatException(file.path() + ": tensor '" + tensor + "' has shape "
                    + Arrays.toString(e.shape()) + ", expected " + Arrays.toString(expectedShape) + " from config.json");
        }
        float[] v = file.readFloats(tensor);
        int bad = 0, first = -1;
        for (int i = 0; i < v.length; i++) {
            if (!Float.isFinite(v[i])) {
                if (bad++ == 0) first = i;
            }
        }
        if (bad > 0) {
            throw new ModelFormatException(file.path() + ": tensor '" + tensor + "' holds " + bad
                    + " NaN/Inf values (first at flat index " + first + "); a non-finite weight poisons every output after it,"
                    + " so the checkpoint is refused");
        }
        return v;
    }

    /**
     * A 2-D float tensor read by rows, each read checked for NaN/Inf like {@link #readFloats}: the embedding
     * and head of a real model, which no JVM holds whole.
     */
    @Override
    public TensorRows rows(String tensor, long... expectedShape) {
        SafetensorsFile file = fileOf(tensor);
        SafetensorsFile.Entry e = file.entry(tensor);
        if (expectedShape.length > 0 && !Arrays.equals(e.shape(), expectedShape)) {
            throw new ModelFormatException(file.path() + ": tensor '" + tensor + "' has shape "
                    + Arrays.toString(e.shape()) + ", expected " + Arrays.toString(expectedShape) + " from config.json");
        }
        if (e.shape().length != 2 || !e.dtype().isFloatWeight()) {
            throw new ModelFormatException(file.path() + ": tensor '" + tensor + "' is " + e.dtype() + " "
                    + Arrays.toString(e.shape()) + ", expected a 2-D F32, F16 or BF16 matrix");
        }
        long rows = e.shape()[0], cols = e.shape()[1];
        return new TensorRows() {
            public String name() { return file.path() + ": tensor '" + tensor + "'"; }
            public long rows() { return rows; }
            public long cols() { return cols; }
            public float[] readRows(long from, int count) {
                if (from < 0 || count < 0 || from + count > rows) {
                    throw new IllegalArgumentException(name() + ": rows " + from + "+" + count + " outside 0.." + rows);
                }
                int width = e.dtype().bytes;
                byte[] raw = file.readRange(tensor, from * cols * width, Math.toIntExact((long) count * cols * width));
                float[] v = e.dtype().decode(raw, 0, Math.toIntExact((long) count * cols));
                int bad = 0, first = -1;
                for (int i = 0; i < v.length; i++) {
                    if (!Float.isFinite(v[i]) && bad++ == 0) first = i;
                }
                if (bad > 0) {
                    throw new ModelFormatException(name() + " holds " + bad + " NaN/Inf values (first at flat index "
                            + (from * cols + first) + (count < rows ? ", in rows " + from + ".." + (from + count - 1) : "")
                            + "); a non-finite weight poisons every output after it, so the checkpoint is refused");
                }
                return v;
            }
        };
    }

    /** The raw bytes of rows {@code [from, from + count)} of a 2-D tensor, in its stored dtype. */
    public byte[] readRawRows(String tensor, long from, long count) {
        SafetensorsFile file = fileOf(tensor);
        SafetensorsFile.Entry e = file.entry(tensor);
        long rowBytes = (e.end() - e.begin()) / Math.max(1, e.shape().length == 0 ? 1 : e.shape()[0]);
        return file.readRange(tensor, from * rowBytes, Math.toIntExact(count * rowBytes));
    }

    private SafetensorsFile fileOf(String tensor) {
        String name = tensorToShard.get(tensor);
        if (name == null) {
            throw new ModelFormatException(dir + ": tensor '" + tensor + "' is missing from the checkpoint ("
                    + (index == null ? SINGLE : INDEX) + ")");
        }
        return shard(name);
    }

    @Override
    public synchronized void close() {
        closeAll(shards);
    }
}
