package io.blockquant.store;

import static io.blockquant.store.StoreLayout.*;

import io.blockquant.model.ModelFormatException;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.StructType;

/**
 * Writes a model store (see {@link StoreLayout}) from the Spark driver. Each block is committed on its own:
 * its Parquet files are written under {@code STORE/_tmp/<uuid>/}, renamed into {@code tensors/block=<i>/} and
 * {@code layer_errors/block=<i>/}, then the marker {@code _committed/block=<i>} is written (the commit point),
 * so a {@code --resume} run skips exactly the whole blocks and redoes an interrupted one. {@link #commit} writes {@code _manifest.json} last.
 *
 * <p>Blocks are sent to Spark in chunks of at most {@link #chunkBytes()} of tensor data per task (half of
 * {@code spark.rpc.message.maxSize}), since the rows travel inside the task; one tensor larger than
 * {@code spark.rpc.message.maxSize} still needs that setting raised on a cluster.
 */
public final class StoreWriter {

    private final SparkSession spark;
    private final FileSystem fs;
    private final Configuration conf;
    private final Path root;
    private final String fingerprint;
    private final String created;
    private long chunkBytes;
    private volatile boolean finished;
    private Path workDir;

    private StoreWriter(SparkSession spark, FileSystem fs, Configuration conf, Path root, String fingerprint,
                        String created) {
        this.spark = spark;
        this.fs = fs;
        this.conf = conf;
        this.root = root;
        this.fingerprint = fingerprint;
        this.created = created;
        long rpcMiB = spark.sparkContext().getConf().getSizeAsMb("spark.rpc.message.maxSize", "128");
        this.chunkBytes = Math.max(1, rpcMiB * 1024 * 1024 / 2);
    }

    /**
     * Opens {@code storePath} for writing. A new or empty folder becomes a new store; an existing store of
     * the same model is continued only with {@code resume}; anything else is refused.
     */
    public static StoreWriter create(SparkSession spark, String storePath, String modelFingerprint, boolean resume) {
        if (modelFingerprint == null || modelFingerprint.isBlank()) {
            throw new IllegalArgumentException(storePath + ": model fingerprint is empty");
        }
        Configuration conf = spark.sparkContext().hadoopConfiguration();
        Path given = new Path(storePath);
        try {
            FileSystem fs = given.getFileSystem(conf);
            Path root = fs.makeQualified(given);
            String created = null;
            boolean createdRoot = !fs.exists(root);
            if (!createdRoot) {
                if (!fs.getFileStatus(root).isDirectory()) {
                    throw new ModelFormatException(root + " is a file, not a model store folder; choose another --out");
                }
                Path manifestPath = new Path(root, MANIFEST);
                Path infoPath = new Path(root, STORE_INFO);
                // a replace a crashed run left half done is finished (or undone) first; the caller holds the lease
                for (Path p : List.of(manifestPath, infoPath, new Path(root, "recipe.json"))) FileReplace.repair(fs, p);
                boolean hasManifest = fs.exists(manifestPath);
                boolean hasInfo = fs.exists(infoPath);
                for (Path p : hasManifest && hasInfo ? List.of(manifestPath, infoPath)
                        : hasManifest ? List.of(manifestPath) : hasInfo ? List.of(infoPath) : List.<Path>of()) {
                    Map<String, Object> json = readJsonObject(fs, p);
                    checkFormatVersion(p, json);
                    String theirs = fingerprintOf(p, json);
                    if (!theirs.equals(modelFingerprint)) {
                        throw new ModelFormatException(root + " already holds a different model (fingerprint " + theirs
                                + ", this job " + modelFingerprint + "); choose another --out or delete it");
                    }
                    if (created == null && json.get(K_CREATED) instanceof String c) created = c;
                }
                if (hasManifest && !resume) {
                    throw new ModelFormatException(root
                            + " already holds a finished model store; use --resume or another --out");
                }
                if (!hasManifest && !hasInfo) {
                    // the lease of the run opening it is no content
                    FileStatus[] children = fs.listStatus(root, p -> !p.getName().equals(StoreLease.FILE));
                    if (children.length > 0) {
                        throw new ModelFormatException(root + " exists and is not a model store (no " + MANIFEST
                                + ", no " + STORE_INFO + ", but " + children.length
                                + " entries, e.g. " + children[0].getPath().getName()
                                + "); choose another --out or delete it");
                    }
                } else if (!resume) {
                    throw new ModelFormatException(root + " holds an unfinished model store of this model (no "
                            + MANIFEST + "); use --resume to continue it or delete it");
                }
            } else if (!fs.mkdirs(root)) {
                throw new IOException("mkdirs failed");
            }
            StoreWriter w = new StoreWriter(spark, fs, conf, root, modelFingerprint,
                    created != null ? created : Instant.now().toString());
            if (!fs.exists(new Path(root, STORE_INFO))) {
                try {
                    w.writeStoreInfo();
                } catch (RuntimeException e) {
                    if (createdRoot) deleteQuietly(fs, root);
                    throw e;
                }
            }
            // staging left by an interrupted run: nothing in it was committed
            fs.delete(new Path(root, TMP), true);
            return w;
        } catch (IOException e) {
            throw new UncheckedIOException(storePath + ": cannot open as a model store (" + e.getMessage() + ")", e);
        }
    }

    private void writeStoreInfo() {
        Map<String, Object> info = orderedMap();
        info.put(K_FORMAT_VERSION, FORMAT_VERSION);
        info.put(K_FINGERPRINT, fingerprint);
        info.put(K_CREATED, created);
        writeAtomically(fs, new Path(root, TMP), new Path(root, STORE_INFO), utf8(toJson(info)));
    }

    public Path root() {
        return root;
    }

    /** True when something (a store or not) is at {@code storePath}. */
    public static boolean exists(SparkSession spark, String storePath) {
        Path p = new Path(storePath);
        try {
            return p.getFileSystem(spark.sparkContext().hadoopConfiguration()).exists(p);
        } catch (IOException e) {
            throw new UncheckedIOException(storePath + ": cannot check (" + e.getMessage() + ")", e);
        }
    }

    /**
     * Deletes the store at {@code storePath} when it is unfinished and no transformer block is committed in
     * it (what a run that failed early leaves), and returns whether it did; the caller knows the run created
     * it. A store with committed blocks is kept for {@code --resume}: it is unfinished, so readers refuse it.
     */
    public static boolean discardIfNoBlock(SparkSession spark, String storePath) {
        try {
            Path given = new Path(storePath);
            FileSystem fs = given.getFileSystem(spark.sparkContext().hadoopConfiguration());
            Path root = fs.makeQualified(given);
            if (!fs.exists(new Path(root, STORE_INFO)) || fs.exists(new Path(root, MANIFEST))) return false;
            if (listBlocks(fs, root, COMMITTED).stream().anyMatch(b -> b >= 0)) return false;
            return fs.delete(root, true);
        } catch (IOException | RuntimeException e) {
            return false; // the error that brought us here is the one to report
        }
    }

    public String fingerprint() {
        return fingerprint;
    }

    /** Bytes of tensor data sent to Spark per write task. */
    public long chunkBytes() {
        return chunkBytes;
    }

    /** For tests and tuning: bytes of tensor data per write task (at least 1). */
    public StoreWriter chunkBytes(long bytes) {
        if (bytes < 1) throw new IllegalArgumentException("chunk bytes " + bytes + " (expected >= 1)");
        this.chunkBytes = bytes;
        return this;
    }

    /** Copies a model file (config.json, tokenizer.json) from any Hadoop path into {@code STORE/model/name}. */
    public void copyModelFile(Path source, String name) {
        checkOpen();
        checkName(name);
        Path target = new Path(new Path(root, MODEL), name);
        try {
            FileSystem srcFs = source.getFileSystem(conf);
            if (!srcFs.exists(source) || srcFs.getFileStatus(source).isDirectory()) {
                throw new ModelFormatException(source + ": no such file to copy into " + target);
            }
            byte[] bytes; // config and tokenizer files: kilobytes to a few MB
            try (InputStream in = srcFs.open(source)) {
                bytes = in.readAllBytes();
            }
            FileReplace.replace(fs, target, bytes);
        } catch (IOException e) {
            throw new UncheckedIOException(source + ": cannot copy into " + target + " (" + e.getMessage() + ")", e);
        }
    }

    /** Writes {@code STORE/name} (recipe.json, ...), replacing an earlier version; {@code json} must parse. */
    public void writeJson(String name, String json) {
        checkOpen();
        checkName(name);
        checkJson(new Path(root, name).toString(), json);
        writeAtomically(fs, new Path(root, TMP), new Path(root, name), utf8(json));
    }

    /** True when block {@code block} (-1: the model-level tensors) is committed: its marker is in place. */
    public boolean isBlockCommitted(int block) {
        Path marker = blockDir(root, COMMITTED, block);
        try {
            return fs.exists(marker);
        } catch (IOException e) {
            throw new UncheckedIOException(marker + ": cannot check (" + e.getMessage() + ")", e);
        }
    }

    /** Committed transformer blocks (>= 0), ascending. */
    public List<Integer> committedBlocks() {
        List<Integer> blocks = new ArrayList<>(listBlocks(fs, root, COMMITTED));
        blocks.removeIf(b -> b < 0);
        return blocks;
    }

    /**
     * Scratch space of the quantize job (activations, Hessians): {@code STORE/_work}, or a folder of this store's
     * own under the {@link #workIn} folder. The store itself never touches it.
     */
    public Path workDir() {
        return workDir != null ? workDir : new Path(root, WORK);
    }

    /**
     * Puts the work area under {@code base} (a fast file system beside a store on S3, where every rename is a copy):
     * {@code base/<store folder name>-<8 hex of the store's full path>}, so two stores never share one.
     */
    public StoreWriter workIn(Path base) {
        try {
            FileSystem wfs = base.getFileSystem(conf);
            String id = java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256")
                    .digest(root.toString().getBytes(StandardCharsets.UTF_8))).substring(0, 8);
            this.workDir = wfs.makeQualified(new Path(base, root.getName() + "-" + id));
            return this;
        } catch (IOException | java.security.NoSuchAlgorithmException e) {
            throw new IllegalArgumentException("--work-dir " + base + ": cannot use (" + e.getMessage() + ")", e);
        }
    }

    /**
     * Commits one transformer block: its tensors and its layers' errors. Does nothing when the block is
     * already committed (a committed block is never overwritten).
     */
    public void commitBlock(int block, List<TensorRecord> tensors, List<LayerError> errors) {
        if (block < 0) {
            throw new IllegalArgumentException(root + ": block " + block
                    + " is not a transformer block (expected >= 0; use commitModelTensors for block -1)");
        }
        commit(block, tensors, errors);
    }

    /** Commits the tensors outside the blocks (embeddings, final norm, head) as block -1. */
    public void commitModelTensors(List<TensorRecord> tensors) {
        commit(TensorRecord.MODEL_BLOCK, tensors, null);
    }

    private void commit(int block, List<TensorRecord> tensors, List<LayerError> errors) {
        checkOpen();
        validate(block, tensors, errors);
        commitStaged(block, staged -> writeTensors(tensors, staged), errors);
    }

    /**
     * Commits block {@code block} (-1: the model tensors) from rows that executors make: each partition of
     * {@code rows} ({@link StoreLayout#TENSORS_FILE_SCHEMA}, e.g. from {@link StoreLayout#toRow}) is computed
     * and written as Parquet by its task, so no tensor of the block passes through the driver. Does nothing
     * when the block is already committed.
     */
    public void commitRows(int block, JavaRDD<Row> rows, List<LayerError> errors) {
        checkOpen();
        validate(block, List.of(), errors);
        commitStaged(block, staged -> parquetWriter(spark.createDataFrame(rows, TENSORS_FILE_SCHEMA)).mode(SaveMode.ErrorIfExists)
                .parquet(staged.toString()), errors);
    }

    private void commitStaged(int block, java.util.function.Consumer<Path> writeTensors, List<LayerError> errors) {
        if (isBlockCommitted(block)) return;
        StoreLease.checkHeldIfLeased(root);
        boolean inPlace = writesInPlace();
        Path stage = new Path(new Path(root, TMP), UUID.randomUUID().toString());
        Path stagedTensors = inPlace ? blockDir(root, TENSORS, block) : new Path(stage, TENSORS);
        Path stagedErrors = inPlace ? blockDir(root, LAYER_ERRORS, block) : new Path(stage, LAYER_ERRORS);
        try {
            if (inPlace) { // what an interrupted commit of this (uncommitted) block left
                fs.delete(stagedTensors, true);
                fs.delete(stagedErrors, true);
            }
            writeTensors.accept(stagedTensors);
            if (errors != null) {
                List<Row> rows = new ArrayList<>(errors.size());
                for (LayerError e : errors) rows.add(toRow(e));
                writeParquet(rows, LAYER_ERRORS_FILE_SCHEMA, stagedErrors, SaveMode.ErrorIfExists);
            }
        } catch (Exception e) { // SparkException is checked, but Scala throws it undeclared
            // a full disk or a lost file system: nothing of this block is committed, and its staging goes
            deleteQuietly(fs, stage);
            if (inPlace) {
                deleteQuietly(fs, stagedTensors);
                deleteQuietly(fs, stagedErrors);
            }
            String reason = reasonOf(e);
            throw new UncheckedIOException(root + ": cannot write "
                    + (block < 0 ? "the model tensors (block -1)" : "block " + block) + " under " + (inPlace ? stagedTensors : stage) + " ("
                    + reason + "); nothing of it is committed",
                    new IOException(reason, e));
        }
        synchronized (this) {
            try {
                StoreLease.checkHeldIfLeased(root); // again: the write may have taken long
                if (!isBlockCommitted(block) && !inPlace) {
                    // folders of an uncommitted block are what an interrupted commit left: replaced
                    if (errors != null) moveInto(fs, stagedErrors, blockDir(root, LAYER_ERRORS, block), true);
                    moveInto(fs, stagedTensors, blockDir(root, TENSORS, block), true);
                }
                if (!isBlockCommitted(block)) {
                    Path marker = blockDir(root, COMMITTED, block);
                    fs.mkdirs(marker.getParent());
                    fs.create(marker, true).close();
                }
                fs.delete(stage, true);
            } catch (IOException e) {
                throw new UncheckedIOException(root + ": cannot commit block " + block + " (" + e.getMessage() + ")", e);
            }
        }
    }

    private void writeTensors(List<TensorRecord> tensors, Path target) {
        List<Row> chunk = new ArrayList<>();
        long chunkSize = 0;
        boolean first = true;
        for (TensorRecord t : tensors) {
            if (!chunk.isEmpty() && chunkSize + t.data().length > chunkBytes) {
                writeParquet(chunk, TENSORS_FILE_SCHEMA, target, first ? SaveMode.ErrorIfExists : SaveMode.Append);
                first = false;
                chunk = new ArrayList<>();
                chunkSize = 0;
            }
            chunk.add(toRow(t));
            chunkSize += t.data().length;
        }
        if (!chunk.isEmpty() || first) {
            writeParquet(chunk, TENSORS_FILE_SCHEMA, target, first ? SaveMode.ErrorIfExists : SaveMode.Append);
        }
    }

    private void writeParquet(List<Row> rows, StructType schema, Path target, SaveMode mode) {
        parquetWriter(spark.createDataFrame(rows, schema).coalesce(1)).mode(mode).parquet(target.toString());
    }

    /** Hadoop configuration key: write blocks in place (true) or stage and rename them (false); default by scheme. */
    public static final String WRITE_IN_PLACE = "blockquant.store.write-in-place";

    /**
     * Whether blocks are written straight into {@code tensors/block=<i>/} instead of staged and renamed: on an
     * object store, where a rename copies every byte. Safe because the marker {@code _committed/block=<i>}, not
     * the folder, is the commit point: an interrupted write leaves an uncommitted folder that is deleted before
     * the block is written again and before the manifest.
     */
    boolean writesInPlace() {
        return conf.getBoolean(WRITE_IN_PLACE, io.blockquant.model.RenameOver.copies(fs));
    }

    /**
     * In place, the output committer's algorithm 2: a task's files are renamed into the folder when the task
     * commits (one copy on S3) rather than again at job commit; the block's marker makes it atomic anyway.
     */
    private org.apache.spark.sql.DataFrameWriter<Row> parquetWriter(org.apache.spark.sql.Dataset<Row> df) {
        org.apache.spark.sql.DataFrameWriter<Row> w = df.write();
        return writesInPlace() ? w.option("mapreduce.fileoutputcommitter.algorithm.version", "2") : w;
    }

    private void validate(int block, List<TensorRecord> tensors, List<LayerError> errors) {
        if (tensors == null) throw new IllegalArgumentException(root + ": block " + block + ": tensors is null");
        Set<String> seen = new HashSet<>();
        for (TensorRecord t : tensors) {
            if (t.block() != block) {
                throw new IllegalArgumentException(root + ": " + t.describe() + " handed in to commit block " + block);
            }
            if (!seen.add(t.module() + "\u0000" + t.kind() + "\u0000" + t.part())) {
                throw new IllegalArgumentException(root + ": " + t.describe() + " appears twice in the block");
            }
            t.verify();
        }
        if (errors != null) {
            Set<String> modules = new HashSet<>();
            for (LayerError e : errors) {
                if (e.block() != block) {
                    throw new IllegalArgumentException(root + ": layer error of block " + e.block() + " module "
                            + e.module() + " handed in to commit block " + block);
                }
                if (!modules.add(e.module())) {
                    throw new IllegalArgumentException(root + ": block " + block + " module " + e.module()
                            + " has two layer errors");
                }
            }
        }
    }

    /**
     * Finishes the store: writes {@code _manifest.json} (format_version, model_fingerprint, num_blocks,
     * blocks, model_tensors, total_bytes, created, finished, then {@code manifestFields}) and removes
     * {@code _tmp}. Blocks 0..n-1 must all be committed. The writer takes no more blocks afterwards.
     */
    public synchronized void commit(Map<String, Object> manifestFields) {
        checkOpen();
        StoreLease.checkHeldIfLeased(root);
        Map<String, Object> manifest = orderedMap();
        List<Integer> blocks = committedBlocks();
        for (int i = 0; i < blocks.size(); i++) {
            if (blocks.get(i) != i) {
                throw new ModelFormatException(root + ": block " + i + " is not committed (committed blocks: "
                        + blocks + "); commit every block before the manifest");
            }
        }
        removeUncommittedFolders();
        manifest.put(K_FORMAT_VERSION, FORMAT_VERSION);
        manifest.put(K_FINGERPRINT, fingerprint);
        manifest.put(K_NUM_BLOCKS, blocks.size());
        manifest.put(K_BLOCKS, blocks);
        manifest.put(K_MODEL_TENSORS, isBlockCommitted(TensorRecord.MODEL_BLOCK));
        manifest.put(K_TOTAL_BYTES, totalBytes());
        manifest.put(K_CREATED, created);
        manifest.put(K_FINISHED, Instant.now().toString());
        if (manifestFields != null) {
            for (Map.Entry<String, Object> e : manifestFields.entrySet()) {
                if (manifest.containsKey(e.getKey())) {
                    throw new IllegalArgumentException(root + "/" + MANIFEST + ": key " + e.getKey()
                            + " is written by the store itself; choose another name");
                }
                manifest.put(e.getKey(), e.getValue());
            }
        }
        writeAtomically(fs, new Path(root, TMP), new Path(root, MANIFEST), utf8(toJson(manifest)));
        try {
            fs.delete(new Path(root, TMP), true);
        } catch (IOException e) {
            throw new UncheckedIOException(new Path(root, TMP) + ": cannot delete (" + e.getMessage() + ")", e);
        }
        finished = true;
    }

    /** Deletes block folders without a commit marker (left by an interrupted commit), so readers never see them. */
    private void removeUncommittedFolders() {
        List<Integer> committed = listBlocks(fs, root, COMMITTED);
        for (String table : List.of(TENSORS, LAYER_ERRORS)) {
            for (int b : listBlocks(fs, root, table)) {
                if (committed.contains(b)) continue;
                Path dir = blockDir(root, table, b);
                try {
                    fs.delete(dir, true);
                } catch (IOException e) {
                    throw new UncheckedIOException(dir + ": cannot delete the uncommitted block (" + e.getMessage() + ")", e);
                }
            }
        }
    }

    private long totalBytes() {
        long total = 0;
        for (String table : List.of(TENSORS, LAYER_ERRORS)) {
            Path dir = new Path(root, table);
            try {
                if (fs.exists(dir)) total += fs.getContentSummary(dir).getLength();
            } catch (IOException e) {
                throw new UncheckedIOException(dir + ": cannot measure (" + e.getMessage() + ")", e);
            }
        }
        return total;
    }

    private void checkOpen() {
        if (finished) throw new IllegalStateException(root + ": the store is committed; open a new writer with resume");
    }

    private void checkName(String name) {
        if (name == null || name.isEmpty() || name.contains("/") || name.contains("\\") || name.startsWith("_")
                || name.startsWith(".") || name.equals(TENSORS) || name.equals(LAYER_ERRORS) || name.equals(MODEL)) {
            throw new IllegalArgumentException(root + ": file name '" + name
                    + "' is not allowed (expected a plain name such as recipe.json, not starting with _ or .)");
        }
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }
}
