package io.blockquant.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.blockquant.model.FloatRounding;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Writes a Hugging Face Llama checkpoint with real model widths and seeded random weights: what tests and
 * benchmarks at real width read when the real weights (GBs per block) cannot be committed or downloaded.
 * Only the number of blocks is small; every tensor has the shape the real model's has.
 *
 * <p>Output (through the Hadoop FileSystem API, so {@code file:}, {@code hdfs:} and {@code s3a:} work):
 * {@code config.json}; bf16 shards {@code model-0000k-of-0000n.safetensors} of at most
 * {@link Settings#shardBytes()} tensor bytes each (one tensor never split; one larger than the cap gets a
 * shard of its own), always with {@code model.safetensors.index.json}, even for one shard; the tokenizer
 * files of {@link Settings#tokenizerDir()}. The folder is written under a temporary name beside the target
 * and renamed when whole, so a failed run leaves no half-written checkpoint.
 *
 * <p>Values: linear weights uniform on [−a, a] with standard deviation {@code std} (a = std·√3), norm
 * weights 1, rounded to bf16 (ties to even). They depend only on (seed, tensor name, position), so a tensor
 * has the same bytes whatever the block count, shard size or thread count. With std 0.02 (Hugging Face's
 * initializer_range) activations stay O(1) through random blocks, since an RMSNorm rescales each block's
 * input: measured on 2 blocks of Llama-3-8B's shape and an 18-token text, residual rms 0.02 (embedding),
 * 2.65, 3.79, logits rms 1.28, all finite.
 *
 * <p>Memory: tensors are generated and written in chunks of {@value #CHUNK_ELEMENTS} values (16 MiB of
 * bf16), each from its own generator seeded by (seed, name, chunk index), so chunks are generated in
 * parallel and written in order; the heap holds (threads + 1) chunks whatever the model's size.
 */
public final class SyntheticCheckpoint {

    private SyntheticCheckpoint() {}

    /** Standard deviation of the linear weights: Hugging Face's {@code initializer_range} for Llama. */
    public static final double DEFAULT_STD = 0.02;
    /** Hugging Face's default {@code max_shard_size}, "5GB" (decimal). */
    public static final long DEFAULT_SHARD_BYTES = 5_000_000_000L;
    /** The tokenizer files copied when present; tokenizer.json must be. */
    public static final List<String> TOKENIZER_FILES =
            List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model");
    public static final String CONFIG = "config.json";
    public static final String INDEX = "model.safetensors.index.json";

    /** Values per generated chunk; also the unit of seeding, so changing it changes every large tensor. */
    static final int CHUNK_ELEMENTS = 8 << 20;

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final VarHandle SHORT_LE = MethodHandles.byteArrayViewVarHandle(short[].class, ByteOrder.LITTLE_ENDIAN);
    private static final short BF16_ONE = (short) (Float.floatToRawIntBits(1f) >>> 16);

    /**
     * A Llama shape. {@code llama3RopeScaling}: the config carries Llama-3.1's rope_scaling (factor 8 over
     * 8192 original positions), as the 405B model's does.
     */
    public record Shape(String name, int hidden, int heads, int kvHeads, int intermediate, int vocab,
                        int maxPositions, double ropeTheta, double normEps, boolean llama3RopeScaling) {
        public Shape {
            positive("hidden size", hidden);
            positive("attention heads", heads);
            positive("key/value heads", kvHeads);
            positive("intermediate size", intermediate);
            positive("vocabulary size", vocab);
            positive("max positions", maxPositions);
            if (hidden % heads != 0) {
                throw new IllegalArgumentException("hidden size " + hidden + " is not divisible by " + heads
                        + " attention heads (head_dim = hidden / heads must be whole)");
            }
            if ((hidden / heads) % 2 != 0) {
                throw new IllegalArgumentException("head_dim = hidden " + hidden + " / heads " + heads + " = " + hidden / heads
                        + " is odd; rotary embeddings rotate pairs of dims, so it must be even");
            }
            if (heads % kvHeads != 0) {
                throw new IllegalArgumentException(heads + " attention heads are not divisible by " + kvHeads
                        + " key/value heads (grouped-query attention shares each KV head among heads / kv heads)");
            }
            if (!(ropeTheta > 0) || !(normEps > 0)) {
                throw new IllegalArgumentException("rope_theta " + ropeTheta + " and rms_norm_eps " + normEps + " must be positive");
            }
        }

        public int headDim() {
            return hidden / heads;
        }

        /** This shape with the given dimensions replaced (null keeps one); its name gains "+custom" when one changes. */
        public Shape with(Integer hidden, Integer heads, Integer kvHeads, Integer intermediate, Integer vocab) {
            int h = hidden != null ? hidden : this.hidden, n = heads != null ? heads : this.heads,
                    kv = kvHeads != null ? kvHeads : this.kvHeads, ff = intermediate != null ? intermediate : this.intermediate,
                    v = vocab != null ? vocab : this.vocab;
            boolean same = h == this.hidden && n == this.heads && kv == this.kvHeads && ff == this.intermediate && v == this.vocab;
            String label = same || name.endsWith("+custom") ? name : name + "+custom";
            return new Shape(label, h, n, kv, ff, v, maxPositions, ropeTheta, normEps, llama3RopeScaling);
        }

        private static void positive(String what, int v) {
            if (v <= 0) throw new IllegalArgumentException(what + " must be positive, got " + v);
        }
    }

    private static final Map<String, Shape> PRESETS = new LinkedHashMap<>();

    static {
        // the published configs' widths; max_position_embeddings as in each model's config.json
        preset(new Shape("llama-2-7b", 4096, 32, 32, 11008, 32000, 4096, 10000, 1e-5, false));
        preset(new Shape("llama-2-70b", 8192, 64, 8, 28672, 32000, 4096, 10000, 1e-5, false));
        preset(new Shape("llama-3-8b", 4096, 32, 8, 14336, 128256, 8192, 500000, 1e-5, false));
        preset(new Shape("llama-3-70b", 8192, 64, 8, 28672, 128256, 8192, 500000, 1e-5, false));
        // only released as Llama-3.1, whose config scales RoPE to 131072 positions
        preset(new Shape("llama-3-405b", 16384, 128, 8, 53248, 128256, 131072, 500000, 1e-5, true));
    }

    private static void preset(Shape s) {
        PRESETS.put(s.name(), s);
    }

    /** The preset shapes by name, in a stable order. */
    public static Map<String, Shape> presets() {
        return java.util.Collections.unmodifiableMap(PRESETS);
    }

    /** The preset named {@code name}; an unknown name is an error listing the known ones. */
    public static Shape preset(String name) {
        Shape s = PRESETS.get(name.toLowerCase(Locale.ROOT));
        if (s == null) {
            throw new IllegalArgumentException("unknown shape '" + name + "' (known: " + String.join(", ", PRESETS.keySet()) + ")");
        }
        return s;
    }

    /**
     * What to write.
     *
     * @param tokenizerDir folder whose {@link #TOKENIZER_FILES} are copied (tokenizer.json required), or null for none
     * @param threads      chunk generators running ahead of the writer (at least 1); each costs a 16 MiB buffer
     */
    public record Settings(Shape shape, int blocks, long seed, double std, long shardBytes, Path tokenizerDir, int threads) {
        public Settings {
            if (shape == null) throw new IllegalArgumentException("a shape is required");
            if (blocks <= 0) throw new IllegalArgumentException("blocks must be at least 1, got " + blocks);
            if (!(std > 0) || !Double.isFinite(std)) throw new IllegalArgumentException("std must be positive and finite, got " + std);
            if (shardBytes <= 0) throw new IllegalArgumentException("shard size must be positive, got " + shardBytes + " bytes");
            if (threads <= 0) throw new IllegalArgumentException("threads must be at least 1, got " + threads);
        }

        /** Seed 0, std 0.02, 5 GB shards, no tokenizer, one generator per core up to 4 (more outrun any disk). */
        public static Settings of(Shape shape, int blocks) {
            return new Settings(shape, blocks, 0, DEFAULT_STD, DEFAULT_SHARD_BYTES, null,
                    Math.min(4, Runtime.getRuntime().availableProcessors()));
        }

        public Settings seed(long s) {
            return new Settings(shape, blocks, s, std, shardBytes, tokenizerDir, threads);
        }

        public Settings std(double s) {
            return new Settings(shape, blocks, seed, s, shardBytes, tokenizerDir, threads);
        }

        public Settings shardBytes(long b) {
            return new Settings(shape, blocks, seed, std, b, tokenizerDir, threads);
        }

        public Settings tokenizerDir(Path dir) {
            return new Settings(shape, blocks, seed, std, shardBytes, dir, threads);
        }

        public Settings threads(int n) {
            return new Settings(shape, blocks, seed, std, shardBytes, tokenizerDir, n);
        }
    }

    /** One tensor of the checkpoint: its Hugging Face name and shape; {@code norm}: filled with ones. */
    public record TensorPlan(String name, long[] shape, boolean norm) {
        public long elements() {
            long n = 1;
            for (long d : shape) n = Math.multiplyExact(n, d);
            return n;
        }

        public long bytes() {
            return 2 * elements();
        }
    }

    /** What was written. {@code tensorBytes} is the index's total_size; {@code folderBytes} counts every file. */
    public record Result(Path dir, long parameters, long tensorBytes, long folderBytes, int shards, int tensors, double seconds) {}

    /** Told of the work once the settings and the output folder are checked, then after each tensor; on the writing thread. */
    public interface Progress {
        Progress NONE = (tensor, index, count, shard, seconds, bytesDone, bytesTotal) -> { };

        default void started(Path dir, int tensors, int shards, long bytes) {}

        void tensorWritten(TensorPlan tensor, int index, int count, String shard, double seconds, long bytesDone, long bytesTotal);
    }

    /** The tensors of a {@code blocks}-block checkpoint of {@code shape}, named as Hugging Face's LlamaForCausalLM, in model order. */
    public static List<TensorPlan> tensors(Shape shape, int blocks) {
        long h = shape.hidden(), q = (long) shape.heads() * shape.headDim(), kv = (long) shape.kvHeads() * shape.headDim(),
                ff = shape.intermediate(), vocab = shape.vocab();
        List<TensorPlan> t = new ArrayList<>();
        t.add(new TensorPlan("model.embed_tokens.weight", new long[] {vocab, h}, false));
        for (int i = 0; i < blocks; i++) {
            String p = "model.layers." + i + ".";
            t.add(new TensorPlan(p + "input_layernorm.weight", new long[] {h}, true));
            t.add(new TensorPlan(p + "self_attn.q_proj.weight", new long[] {q, h}, false));
            t.add(new TensorPlan(p + "self_attn.k_proj.weight", new long[] {kv, h}, false));
            t.add(new TensorPlan(p + "self_attn.v_proj.weight", new long[] {kv, h}, false));
            t.add(new TensorPlan(p + "self_attn.o_proj.weight", new long[] {h, q}, false));
            t.add(new TensorPlan(p + "post_attention_layernorm.weight", new long[] {h}, true));
            t.add(new TensorPlan(p + "mlp.gate_proj.weight", new long[] {ff, h}, false));
            t.add(new TensorPlan(p + "mlp.up_proj.weight", new long[] {ff, h}, false));
            t.add(new TensorPlan(p + "mlp.down_proj.weight", new long[] {h, ff}, false));
        }
        t.add(new TensorPlan("model.norm.weight", new long[] {h}, true));
        t.add(new TensorPlan("lm_head.weight", new long[] {vocab, h}, false));
        return t;
    }

    /** The config.json of the checkpoint (Hugging Face LlamaConfig keys). */
    public static ObjectNode config(Settings s) {
        Shape shape = s.shape();
        ObjectNode c = JSON.createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("model_type", "llama");
        c.put("hidden_size", shape.hidden());
        c.put("intermediate_size", shape.intermediate());
        c.put("num_attention_heads", shape.heads());
        c.put("num_key_value_heads", shape.kvHeads());
        c.put("head_dim", shape.headDim());
        c.put("num_hidden_layers", s.blocks());
        c.put("vocab_size", shape.vocab());
        c.put("max_position_embeddings", shape.maxPositions());
        c.put("rms_norm_eps", shape.normEps());
        c.put("rope_theta", shape.ropeTheta());
        if (shape.llama3RopeScaling()) {
            ObjectNode r = c.putObject("rope_scaling");
            r.put("rope_type", "llama3");
            r.put("factor", 8.0);
            r.put("low_freq_factor", 1.0);
            r.put("high_freq_factor", 4.0);
            r.put("original_max_position_embeddings", 8192);
        } else {
            c.putNull("rope_scaling");
        }
        c.put("tie_word_embeddings", false);
        c.put("torch_dtype", "bfloat16");
        c.put("hidden_act", "silu");
        c.put("attention_bias", false);
        c.put("mlp_bias", false);
        c.put("initializer_range", s.std());
        // provenance: a reader can tell these weights are random, and regenerate them
        ObjectNode g = c.putObject("blockquant_synthetic");
        g.put("shape", shape.name());
        g.put("seed", s.seed());
        g.put("std", s.std());
        g.put("distribution", "uniform");
        return c;
    }

    /** Writes the checkpoint into {@code out}, which must not exist or be an empty folder. */
    public static Result write(Path out, Configuration conf, Settings s, Progress progress) {
        long start = System.nanoTime();
        ObjectNode config = config(s);
        checkConfigReadsBack(config, s);
        List<TensorPlan> tensors = tensors(s.shape(), s.blocks());
        List<List<TensorPlan>> shards = shard(tensors, s.shardBytes());
        long total = tensors.stream().mapToLong(TensorPlan::bytes).sum();
        long params = tensors.stream().mapToLong(TensorPlan::elements).sum();
        // our own instance: on a local folder it writes no .crc files (and pays no checksum), without
        // changing the FileSystem that the rest of this JVM shares from the cache
        try (FileSystem fs = FileSystem.newInstance(out.toUri(), conf)) {
            fs.setWriteChecksum(false);
            Path dir = fs.makeQualified(new Path(out.toString())); // a String path drops a trailing slash (URI-made ones keep it)
            checkOutput(fs, dir);
            if (s.tokenizerDir() != null) checkTokenizer(s.tokenizerDir(), conf, s.shape().vocab());
            if (dir.getParent() == null) throw new IllegalArgumentException(dir + ": cannot write a checkpoint at a file system root");
            byte[][] buffers = buffers(s.threads() + 1, tensors);
            Path tmp = new Path(dir.getParent(), "." + dir.getName() + ".tmp-" + UUID.randomUUID());
            if (progress == null) progress = Progress.NONE;
            progress.started(dir, tensors.size(), shards.size(), total);
            try {
                fs.mkdirs(tmp);
                writeJson(fs, new Path(tmp, CONFIG), config);
                Map<String, String> weightMap = writeShards(fs, tmp, shards, s, buffers, total, progress);
                ObjectNode index = JSON.createObjectNode();
                index.putObject("metadata").put("total_parameters", params).put("total_size", total);
                ObjectNode wm = index.putObject("weight_map");
                new TreeMap<>(weightMap).forEach(wm::put); // sorted, as save_pretrained writes it
                writeJson(fs, new Path(tmp, INDEX), index);
                if (s.tokenizerDir() != null) copyTokenizer(s.tokenizerDir(), conf, fs, tmp);
                if (fs.exists(dir) && !fs.delete(dir, false)) { // checked empty above: a non-recursive delete
                    throw new IOException("cannot replace the empty folder " + dir);
                }
                if (!fs.rename(tmp, dir)) throw new IOException("cannot rename " + tmp + " to " + dir);
            } catch (IOException | RuntimeException | Error e) {
                try {
                    fs.delete(tmp, true); // ours alone: the partial checkpoint
                } catch (IOException ignored) {
                    // the error being thrown says more
                }
                throw e;
            }
            long folderBytes = fs.getContentSummary(dir).getLength();
            return new Result(dir, params, total, folderBytes, shards.size(), tensors.size(), (System.nanoTime() - start) / 1e9);
        } catch (IOException e) {
            throw new UncheckedIOException(out + ": cannot write the checkpoint (" + e.getMessage() + ")", e);
        }
    }

    /** Tensors into shards in order, a new shard when the next tensor would pass the cap (Hugging Face's greedy split). */
    static List<List<TensorPlan>> shard(List<TensorPlan> tensors, long capBytes) {
        List<List<TensorPlan>> shards = new ArrayList<>();
        List<TensorPlan> cur = new ArrayList<>();
        long size = 0;
        for (TensorPlan t : tensors) {
            if (!cur.isEmpty() && size + t.bytes() > capBytes) {
                shards.add(cur);
                cur = new ArrayList<>();
                size = 0;
            }
            cur.add(t);
            size += t.bytes();
        }
        if (!cur.isEmpty()) shards.add(cur);
        return shards;
    }

    static String shardName(int k, int n) {
        return String.format(Locale.ROOT, "model-%05d-of-%05d.safetensors", k + 1, n);
    }

    /** The ring of chunk buffers, each as large as the largest chunk; allocated before anything is written. */
    private static byte[][] buffers(int count, List<TensorPlan> tensors) {
        long largest = tensors.stream().mapToLong(t -> Math.min(t.elements(), CHUNK_ELEMENTS)).max().orElse(1);
        try {
            byte[][] b = new byte[count][];
            for (int i = 0; i < count; i++) b[i] = new byte[(int) (2 * largest)];
            return b;
        } catch (OutOfMemoryError e) {
            throw new IllegalArgumentException("out of heap for the " + count + " chunk buffers of " + human(2 * largest)
                    + " (one per generator thread, plus one): give the JVM more heap (-Xmx, BLOCKQUANT_HEAP) or use fewer threads", e);
        }
    }

    /** One chunk to generate: values [index·CHUNK_ELEMENTS, index·CHUNK_ELEMENTS + count) of tensor number {@code tensor}. */
    private record Chunk(int shard, int tensor, TensorPlan plan, long index, int count, boolean firstOfTensor, boolean lastOfTensor) {}

    /**
     * Generates chunks on {@code threads} workers, up to one per buffer ahead, each into its slot of the ring of
     * buffers, and writes them in order on this thread: a slot is reused only once its chunk is written.
     */
    private static Map<String, String> writeShards(FileSystem fs, Path dir, List<List<TensorPlan>> shards, Settings s,
                                                   byte[][] buffers, long totalBytes, Progress progress) throws IOException {
        List<Chunk> chunks = new ArrayList<>();
        int tensorIndex = 0, tensorCount = shards.stream().mapToInt(List::size).sum();
        for (int k = 0; k < shards.size(); k++) {
            for (TensorPlan t : shards.get(k)) {
                long n = t.elements(), count = (n + CHUNK_ELEMENTS - 1) / CHUNK_ELEMENTS;
                for (long c = 0; c < count; c++) {
                    chunks.add(new Chunk(k, tensorIndex, t, c, (int) Math.min(CHUNK_ELEMENTS, n - c * CHUNK_ELEMENTS), c == 0, c == count - 1));
                }
                tensorIndex++;
            }
        }
        int window = buffers.length;
        Future<?>[] pending = new Future<?>[window];
        Map<String, String> weightMap = new LinkedHashMap<>();
        ExecutorService pool = Executors.newFixedThreadPool(s.threads(), r -> {
            Thread t = new Thread(r, "synth-generator");
            t.setDaemon(true);
            return t;
        });
        OutputStream out = null;
        String shardName = null;
        long done = 0, tensorStart = 0;
        try {
            int submitted = 0;
            for (int i = 0; i < chunks.size(); i++) {
                for (; submitted < chunks.size() && submitted < i + window; submitted++) {
                    Chunk c = chunks.get(submitted);
                    byte[] buf = buffers[submitted % window];
                    pending[submitted % window] = pool.submit(() -> fill(c.plan(), s.seed(), s.std(), c.index(), buf, c.count()));
                }
                Chunk c = chunks.get(i);
                if (c.firstOfTensor() && (i == 0 || chunks.get(i - 1).shard() != c.shard())) {
                    if (out != null) out.close();
                    shardName = shardName(c.shard(), shards.size());
                    out = fs.create(new Path(dir, shardName), true);
                    out.write(header(shards.get(c.shard())));
                }
                if (c.firstOfTensor()) tensorStart = System.nanoTime();
                await(pending[i % window]);
                out.write(buffers[i % window], 0, 2 * c.count());
                done += 2L * c.count();
                if (c.lastOfTensor()) {
                    weightMap.put(c.plan().name(), shardName);
                    progress.tensorWritten(c.plan(), c.tensor(), tensorCount, shardName, (System.nanoTime() - tensorStart) / 1e9,
                            done, totalBytes);
                }
            }
            out.close();
            out = null;
        } finally {
            pool.shutdownNow();
            if (out != null) {
                try {
                    out.close();
                } catch (IOException ignored) {
                    // the error being thrown says more
                }
            }
        }
        return weightMap;
    }

    private static void await(Future<?> f) throws IOException {
        try {
            f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while generating weights", e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            if (e.getCause() instanceof Error err) throw err;
            throw new IllegalStateException(e.getCause());
        }
    }

    /**
     * Chunk {@code chunk} of {@code t} as little-endian bf16 into {@code out[0, 2·count)}. Each 64-bit draw
     * gives two 24-bit uniforms, centred and scaled in one float multiply.
     */
    static void fill(TensorPlan t, long seed, double std, long chunk, byte[] out, int count) {
        if (t.norm()) {
            for (int i = 0; i < count; i++) SHORT_LE.set(out, 2 * i, BF16_ONE);
            return;
        }
        SplittableRandom rnd = new SplittableRandom(chunkSeed(seed, t.name(), chunk));
        float scale = (float) (std * Math.sqrt(3.0) / (1 << 23)); // (u24 − 2^23)·scale is uniform on [−a, a)
        int i = 0;
        for (; i + 1 < count; i += 2) {
            long r = rnd.nextLong();
            int hi = (int) (r >>> 40), lo = (int) (r >>> 16) & 0xffffff;
            SHORT_LE.set(out, 2 * i, bf16((hi - (1 << 23)) * scale));
            SHORT_LE.set(out, 2 * i + 2, bf16((lo - (1 << 23)) * scale));
        }
        if (i < count) SHORT_LE.set(out, 2 * i, bf16(((int) (rnd.nextLong() >>> 40) - (1 << 23)) * scale));
    }

    private static short bf16(float v) {
        return (short) (Float.floatToRawIntBits(FloatRounding.toBfloat16(v)) >>> 16);
    }

    /** The generator seed of one chunk: seed, tensor name and chunk index, mixed so neighbours are unrelated. */
    static long chunkSeed(long seed, String name, long chunk) {
        long h = 0xcbf29ce484222325L; // FNV-1a 64 of the name: stable across JVMs, unlike String.hashCode's 32 bits
        for (byte b : name.getBytes(StandardCharsets.UTF_8)) {
            h ^= b & 0xff;
            h *= 0x100000001b3L;
        }
        return mix(mix(seed ^ mix(h)) + chunk * 0x9E3779B97F4A7C15L);
    }

    private static long mix(long z) { // SplitMix64's finalizer
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    /** A shard's 8-byte length and JSON header, padded with spaces to 8 bytes as SafetensorsWriter and the reference writer do. */
    static byte[] header(List<TensorPlan> tensors) {
        ObjectNode h = JSON.createObjectNode();
        h.putObject("__metadata__").put("format", "pt");
        long offset = 0;
        for (TensorPlan t : tensors) {
            ObjectNode e = h.putObject(t.name());
            e.put("dtype", "BF16");
            var shape = e.putArray("shape");
            for (long d : t.shape()) shape.add(d);
            e.putArray("data_offsets").add(offset).add(offset + t.bytes());
            offset += t.bytes();
        }
        byte[] json = h.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8;
        ByteBuffer b = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(padded).put(json);
        while (b.hasRemaining()) b.put((byte) ' ');
        return b.array();
    }

    /** The project's reader must accept the config and see the requested dimensions, else the checkpoint is useless. */
    private static void checkConfigReadsBack(ObjectNode config, Settings s) {
        ModelSpec spec = ModelSpecReader.parse("synthetic config.json", config);
        Shape sh = s.shape();
        if (spec.hiddenSize() != sh.hidden() || spec.numHeads() != sh.heads() || spec.numKvHeads() != sh.kvHeads()
                || spec.intermediateSize() != sh.intermediate() || spec.vocabSize() != sh.vocab() || spec.numLayers() != s.blocks()
                || spec.tieWordEmbeddings()) {
            throw new IllegalStateException("ModelSpecReader reads the synthetic config as " + spec.describe());
        }
    }

    private static void checkOutput(FileSystem fs, Path dir) throws IOException {
        if (!fs.exists(dir)) return;
        if (!fs.getFileStatus(dir).isDirectory()) {
            throw new IllegalArgumentException(dir + " exists and is a file; the output must be a new or empty folder");
        }
        int entries = fs.listStatus(dir).length;
        if (entries > 0) {
            throw new IllegalArgumentException(dir + " exists and is not empty (" + entries + (entries == 1 ? " entry" : " entries") + "); choose a new or empty"
                    + " folder (nothing is ever deleted or overwritten)");
        }
    }

    /** tokenizer.json must be there, and its ids must fit the embedding. */
    private static void checkTokenizer(Path dir, Configuration conf, int vocab) throws IOException {
        Path file = new Path(dir, "tokenizer.json");
        FileSystem fs = file.getFileSystem(conf);
        if (!fs.exists(file)) throw new IllegalArgumentException(file + ": not found (the tokenizer folder needs tokenizer.json)");
        JsonNode t;
        try (InputStream in = fs.open(file)) {
            t = JSON.readTree(in);
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalArgumentException(file + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        }
        long ids = 0;
        JsonNode v = t.path("model").path("vocab");
        if (v.isObject()) {
            for (var it = v.elements(); it.hasNext(); ) ids = Math.max(ids, it.next().asLong() + 1);
        } else if (v.isArray()) {
            ids = v.size(); // Unigram: [[piece, score], ...], ids are positions
        }
        for (JsonNode a : t.path("added_tokens")) ids = Math.max(ids, a.path("id").asLong() + 1);
        if (ids > vocab) {
            throw new IllegalArgumentException("vocabulary size " + vocab + " is smaller than the tokenizer's " + ids + " ids ("
                    + file + "); its token ids would fall outside the embedding");
        }
    }

    private static void copyTokenizer(Path src, Configuration conf, FileSystem fs, Path dir) throws IOException {
        FileSystem srcFs = src.getFileSystem(conf);
        for (String f : TOKENIZER_FILES) {
            Path from = new Path(src, f);
            if (!srcFs.exists(from)) continue;
            try (InputStream in = srcFs.open(from); OutputStream o = fs.create(new Path(dir, f), true)) {
                in.transferTo(o);
            }
        }
    }

    private static void writeJson(FileSystem fs, Path file, JsonNode json) throws IOException {
        try (OutputStream o = fs.create(file, true)) {
            o.write(JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(json));
            o.write('\n');
        }
    }

    /** Bytes in a human unit, decimal as Hugging Face's shard sizes ("5GB" = 5·10^9). */
    public static String human(long bytes) {
        if (bytes >= 1_000_000_000L) return String.format(Locale.ROOT, "%.2f GB", bytes / 1e9);
        if (bytes >= 1_000_000L) return String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
        if (bytes >= 1_000L) return String.format(Locale.ROOT, "%.1f kB", bytes / 1e3);
        return bytes + " B";
    }
}
