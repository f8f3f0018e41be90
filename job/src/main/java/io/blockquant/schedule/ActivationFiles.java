package io.blockquant.schedule;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.model.LocalDisk;
import io.blockquant.store.FileReplace;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.TaskContext;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.util.CollectionAccumulator;

/**
 * Block activations between stages, one file per (block, partition, task attempt) in the store's work area:
 * {@code _work/acts/block-0003/part-00007.a<attempt>.f32}, a little-endian header (rows, cols) then row-major
 * float32. Executors write and read them directly; the driver never holds activations.
 *
 * <p>Each task attempt writes its own file (its Spark task attempt id in the name, under a temporary name of its
 * own first) and never deletes or replaces another's, so an attempt that Spark gave up on (its executor declared
 * lost) but that still runs cannot touch the file of the attempt Spark accepted. Which attempt that was, the
 * driver learns from {@link #accepted}, an accumulator that Spark merges only from the one successful attempt of
 * each partition of an action; {@link #markComplete} writes that choice into {@code _COMPLETE}, and readers
 * read the files it names. Without a marker (a work area that an {@code eval} run fills), a reader takes the
 * newest file of the partition.
 */
public record ActivationFiles(String workDir, CollectionAccumulator<String> accepted) implements Serializable {

    /** Files under {@code workDir}, their accepted attempts recorded in the active Spark session (if one is). */
    public ActivationFiles(String workDir) {
        this(workDir, acceptedAttempts(workDir));
    }

    private static CollectionAccumulator<String> acceptedAttempts(String workDir) {
        scala.Option<SparkSession> s = SparkSession.getActiveSession();
        if (s.isEmpty()) s = SparkSession.getDefaultSession();
        return s.isEmpty() ? null : s.get().sparkContext().collectionAccumulator("activation attempts " + workDir);
    }

    /** The file that partition {@code partition} of {@code block} gets from the task attempt writing it now. */
    public Path path(int block, int partition) {
        return path(block, partition, attemptName());
    }

    Path path(int block, int partition, String attempt) {
        return new Path(blockDir(block), String.format("part-%05d.%s.f32", partition, attempt));
    }

    private Path blockDir(int block) {
        return new Path(workDir, String.format("acts/block-%04d", block));
    }

    private Path marker(int block) {
        return new Path(blockDir(block), "_COMPLETE");
    }

    /** {@code a<task attempt id>} inside a Spark task (unique in the application), else {@code d<uuid>} (the driver, tests). */
    static String attemptName() {
        TaskContext tc = TaskContext.get();
        return tc != null ? "a" + tc.taskAttemptId() : "d" + UUID.randomUUID().toString().substring(0, 8);
    }

    public void write(Configuration conf, int block, int partition, float[] values, int rows, int cols) throws IOException {
        String attempt = attemptName();
        write(conf, block, partition, values, rows, cols, attempt);
        if (accepted != null && TaskContext.get() != null) accepted.add(block + ":" + partition + ":" + attempt);
    }

    /**
     * As {@link #write}, on {@code pool} while the calling task computes on: the attempt is named and recorded from the
     * calling (task) thread, and the task must wait for the future (a failed write fails it, and Spark keeps no
     * attempt's record unless the attempt succeeds). Returns the file written.
     */
    public java.util.concurrent.CompletableFuture<Path> writeInBackground(java.util.concurrent.ExecutorService pool, Configuration conf,
                                                                           int block, int partition, float[] values, int rows, int cols) {
        return inBackground(pool, block, partition, attempt -> write(conf, block, partition, values, rows, cols, attempt));
    }

    /**
     * As above, from a tensor of the task's backend ({@code [rows, cols]}, its computing finished): a GPU's outputs go to
     * the file through a small buffer, on the writer's own stream, while the task computes on; they are never whole on
     * the Java heap (a Llama-3-8B block's 4 GiB of outputs copied there, then again into a byte array, cost more than
     * the pass that computed them). The caller keeps {@code values} open until the future completes.
     */
    public java.util.concurrent.CompletableFuture<Path> writeInBackground(java.util.concurrent.ExecutorService pool, Configuration conf,
                                                                           int block, int partition, Tensor values) {
        int rows = Math.toIntExact(values.size(0)), cols = Math.toIntExact(values.size(1));
        return inBackground(pool, block, partition, attempt -> {
            TensorBackend be = values.backend();
            ByteBuffer direct = ByteBuffer.allocateDirect(CHUNK_BYTES).order(ByteOrder.LITTLE_ENDIAN);
            try {
                writeFile(conf, block, partition, rows, cols, attempt, (from, n, chunk) -> {
                    direct.clear().limit(n * Float.BYTES);
                    be.toBytes(values, from, direct);
                    direct.flip();
                    direct.get(chunk, 0, n * Float.BYTES);
                });
            } finally {
                be.endTask(); // the writer thread's stream and handles go back to the device's pool
            }
        });
    }

    private interface AttemptWrite {
        void write(String attempt) throws IOException;
    }

    private java.util.concurrent.CompletableFuture<Path> inBackground(java.util.concurrent.ExecutorService pool, int block, int partition,
                                                                      AttemptWrite w) {
        String attempt = attemptName();
        if (accepted != null && TaskContext.get() != null) accepted.add(block + ":" + partition + ":" + attempt);
        return java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                w.write(attempt);
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
            return path(block, partition, attempt);
        }, pool);
    }

    /** Writes the file of {@code attempt}: under a temporary name of its own, then renamed; never deletes another's. */
    void write(Configuration conf, int block, int partition, float[] values, int rows, int cols, String attempt) throws IOException {
        writeFile(conf, block, partition, rows, cols, attempt,
                (from, n, chunk) -> ByteBuffer.wrap(chunk, 0, n * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
                        .put(values, Math.toIntExact(from), n));
    }

    /** The values are written a chunk at a time: never a second whole copy of them. */
    private static final int CHUNK_BYTES = 16 << 20;

    /** Puts {@code n} values from element {@code from} into {@code chunk} as little-endian float32. */
    private interface ChunkFill {
        void fill(long from, int n, byte[] chunk) throws IOException;
    }

    private void writeFile(Configuration conf, int block, int partition, int rows, int cols, String attempt, ChunkFill fill)
            throws IOException {
        Path p = path(block, partition, attempt);
        Path tmp = new Path(p.getParent(), "." + p.getName() + ".tmp");
        // no checksum files on a local disk: activations are written once and read back by the same run (gigabytes per
        // block at real widths), where a CRC beside every 512 bytes doubled the I/O for nothing a rerun would not redo
        FileSystem fs = LocalDisk.unchecked(p.getFileSystem(conf));
        long count = (long) rows * cols;
        byte[] chunk = new byte[(int) Math.min(CHUNK_BYTES, Math.max(count, 1) * Float.BYTES)];
        try {
            try (FSDataOutputStream out = fs.create(tmp, true)) {
                DataOutputStream d = new DataOutputStream(out);
                d.writeInt(rows);
                d.writeInt(cols);
                for (long from = 0; from < count; ) {
                    int n = (int) Math.min(count - from, chunk.length / Float.BYTES);
                    fill.fill(from, n, chunk);
                    d.write(chunk, 0, n * Float.BYTES);
                    from += n;
                }
            }
            if (!fs.rename(tmp, p)) throw new IOException("cannot rename " + tmp + " to " + p);
        } catch (IOException | RuntimeException e) {
            // inside a task: the message is all the driver will see of where the write failed
            try {
                fs.delete(tmp, false); // this attempt's own temporary file, no one else's
            } catch (IOException ignored) {
                // the write error below is the one to report
            }
            throw new IOException(p + ": cannot write block " + block + "'s activations (" + e.getMessage() + ")", e);
        }
    }

    /** The file a reader of {@code block}'s partition takes: the accepted attempt's, else the newest. */
    Path resolve(Configuration conf, int block, int partition) throws IOException {
        FileSystem fs = blockDir(block).getFileSystem(conf);
        return resolve(fs, block, partition, acceptedFiles(fs, block));
    }

    /** The accepted attempt's file of each partition, by the marker (empty without one). */
    private Map<String, String> acceptedFiles(FileSystem fs, int block) throws IOException {
        Path marker = marker(block);
        return fs.exists(marker) ? readMarker(fs, marker) : Map.of();
    }

    private Path resolve(FileSystem fs, int block, int partition, Map<String, String> accepted) throws IOException {
        String name = accepted.get(Integer.toString(partition));
        if (name != null) return new Path(blockDir(block), name);
        String prefix = String.format("part-%05d.", partition);
        FileStatus newest = null;
        for (FileStatus st : fs.listStatus(blockDir(block), f -> f.getName().startsWith(prefix) && f.getName().endsWith(".f32"))) {
            if (newest == null || st.getModificationTime() > newest.getModificationTime()) newest = st;
        }
        if (newest == null) throw new java.io.FileNotFoundException(blockDir(block) + ": no activations of partition " + partition);
        return newest.getPath();
    }

    @SuppressWarnings("unchecked")
    private static Map<String, String> readMarker(FileSystem fs, Path marker) throws IOException {
        try (InputStream in = fs.open(marker)) {
            byte[] bytes = in.readAllBytes();
            return bytes.length == 0 ? Map.of() : new ObjectMapper().readValue(bytes, Map.class);
        }
    }

    /** {rows, cols} in {@code shape}, the values returned. */
    public float[] read(Configuration conf, int block, int partition, int[] shape) throws IOException {
        Path p = resolve(conf, block, partition);
        FileSystem fs = LocalDisk.unchecked(p.getFileSystem(conf));
        try (FSDataInputStream in = fs.open(p)) {
            DataInputStream d = new DataInputStream(in);
            shape[0] = d.readInt();
            shape[1] = d.readInt();
            byte[] bytes = new byte[shape[0] * shape[1] * 4];
            d.readFully(bytes);
            float[] v = new float[shape[0] * shape[1]];
            ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(v);
            return v;
        }
    }

    /**
     * Marks block {@code block}'s inputs as whole, every partition written (the driver does this after the job),
     * naming the file of each partition's accepted attempt; files of other attempts are deleted.
     */
    public void markComplete(Configuration conf, int block) throws IOException {
        Path marker = marker(block);
        FileSystem fs = marker.getFileSystem(conf);
        Map<String, String> files = new TreeMap<>();
        if (accepted != null) {
            // merged in the order the attempts finished: a later job's attempt for a partition replaces an earlier one
            for (String e : accepted.value()) {
                String[] f = e.split(":");
                if (Integer.parseInt(f[0]) == block) files.put(f[1], path(block, Integer.parseInt(f[1]), f[2]).getName());
            }
        }
        FileReplace.replace(fs, marker, new ObjectMapper().writeValueAsBytes(files));
        if (files.isEmpty()) return;
        // the losing attempts' files of the partitions recorded here; a partition this run did not write keeps its file
        for (FileStatus st : fs.listStatus(blockDir(block), f -> f.getName().startsWith("part-"))) {
            String name = st.getPath().getName();
            String partition = Integer.toString(Integer.parseInt(name.substring(5, name.indexOf('.'))));
            if (files.containsKey(partition) && !files.get(partition).equals(name)) fs.delete(st.getPath(), false);
        }
    }

    /** The files a reader takes for {@code block}'s partitions {@code parts}, in that order. */
    List<Path> resolve(Configuration conf, int block, List<Integer> parts) throws IOException {
        FileSystem fs = blockDir(block).getFileSystem(conf);
        Map<String, String> accepted = acceptedFiles(fs, block); // read once, not once per partition
        List<Path> out = new java.util.ArrayList<>();
        for (int p : parts) out.add(resolve(fs, block, p, accepted));
        return out;
    }

    /** True when block {@code block}'s inputs were all written by a job that finished. */
    public boolean isComplete(Configuration conf, int block) throws IOException {
        Path marker = marker(block);
        return marker.getFileSystem(conf).exists(marker);
    }

    /** Block {@code block}'s inputs as the partitions {@code parts}, in that order, read as a step asks for them. */
    BlockStep.Inputs inputs(Configuration conf, int block, java.util.List<Integer> parts) {
        return new BlockStep.Inputs() {
            @Override
            public int partitions() {
                return parts.size();
            }

            @Override
            public float[] read(int p, int[] shape) throws IOException {
                return ActivationFiles.this.read(conf, block, parts.get(p), shape);
            }
        };
    }

    public void deleteBlock(Configuration conf, int block) throws IOException {
        Path dir = blockDir(block);
        dir.getFileSystem(conf).delete(dir, true);
    }
}
