package io.blockquant.store;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.model.ModelFormatException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The on-disk layout of a model store (the folder {@code quantize --out STORE} writes):
 * <pre>
 * STORE/_store.json                     format_version, model_fingerprint, created: written first
 * STORE/_manifest.json                  written last; a store without it is not a model
 * STORE/model/config.json, tokenizer.json
 * STORE/recipe.json, ...                {@link StoreWriter#writeJson}
 * STORE/tensors/block=&lt;i&gt;/*.parquet       {@link #TENSORS_FILE_SCHEMA}; block=-1 holds embeddings, final norm, head
 * STORE/layer_errors/block=&lt;i&gt;/*.parquet  {@link #LAYER_ERRORS_FILE_SCHEMA}
 * STORE/_committed/block=&lt;i&gt;             empty marker, written after both folders of block i are in place
 * STORE/_tmp/                           staging, removed by the final commit
 * STORE/_work/                          the quantize job's scratch space (activations); not touched here
 * </pre>
 * A block is committed when its marker exists: a folder rename is atomic on HDFS and local disks but a
 * copy on object stores (s3a), so the marker, not the folder, says the block is complete.
 * The {@code block} column is not in the files: Spark takes it from the {@code block=<i>} folder names.
 */
public final class StoreLayout {

    private StoreLayout() {}

    /** 2: block -1 in the checkpoint's dtype, large tensors split into parts (column {@code part}). */
    public static final int FORMAT_VERSION = 2;
    public static final String MANIFEST = "_manifest.json";
    public static final String STORE_INFO = "_store.json";
    public static final String TMP = "_tmp";
    public static final String TENSORS = "tensors";
    public static final String LAYER_ERRORS = "layer_errors";
    public static final String MODEL = "model";
    public static final String COMMITTED = "_committed";
    public static final String WORK = "_work";

    public static final String K_FORMAT_VERSION = "format_version";
    public static final String K_FINGERPRINT = "model_fingerprint";
    public static final String K_CREATED = "created";
    public static final String K_FINISHED = "finished";
    public static final String K_NUM_BLOCKS = "num_blocks";
    public static final String K_BLOCKS = "blocks";
    public static final String K_MODEL_TENSORS = "model_tensors";
    public static final String K_TOTAL_BYTES = "total_bytes";

    /** Columns of the Parquet files in {@code tensors/block=<i>/}. */
    public static final StructType TENSORS_FILE_SCHEMA = new StructType(new StructField[] {
            DataTypes.createStructField("module", DataTypes.StringType, false),
            DataTypes.createStructField("kind", DataTypes.StringType, false),
            DataTypes.createStructField("dtype", DataTypes.StringType, false),
            DataTypes.createStructField("shape", DataTypes.createArrayType(DataTypes.LongType, false), false),
            DataTypes.createStructField("bits", DataTypes.IntegerType, false),
            DataTypes.createStructField("group_size", DataTypes.IntegerType, false),
            DataTypes.createStructField("format", DataTypes.StringType, false),
            DataTypes.createStructField("bytes", DataTypes.LongType, false),
            DataTypes.createStructField("checksum", DataTypes.StringType, false),
            DataTypes.createStructField("data", DataTypes.BinaryType, false),
            // format_version 2: the slice of a split tensor (TensorRecord#part); absent (null) in version 1 files
            DataTypes.createStructField("part", DataTypes.IntegerType, true)});

    /** The tensors table as SQL sees it: {@code block} first, then the file columns. */
    public static final StructType TENSORS_SCHEMA = withBlock(TENSORS_FILE_SCHEMA);

    public static final StructType LAYER_ERRORS_FILE_SCHEMA = new StructType(new StructField[] {
            DataTypes.createStructField("module", DataTypes.StringType, false),
            DataTypes.createStructField("relative_output_error", DataTypes.DoubleType, false),
            DataTypes.createStructField("gptq_loss", DataTypes.DoubleType, false),
            DataTypes.createStructField("calibration_tokens", DataTypes.LongType, false)});

    public static final StructType LAYER_ERRORS_SCHEMA = withBlock(LAYER_ERRORS_FILE_SCHEMA);

    private static final ObjectMapper JSON = new ObjectMapper();

    private static StructType withBlock(StructType file) {
        StructType s = new StructType().add("block", DataTypes.IntegerType, false);
        for (StructField f : file.fields()) s = s.add(f);
        return s;
    }

    static Path blockDir(Path root, String table, int block) {
        return new Path(new Path(root, table), "block=" + block);
    }

    /**
     * Blocks with a {@code block=<i>} entry under {@code root/table} (folders for tensors and layer_errors,
     * files for _committed), ascending, block -1 included.
     */
    static List<Integer> listBlocks(FileSystem fs, Path root, String table) {
        Path dir = new Path(root, table);
        List<Integer> blocks = new ArrayList<>();
        try {
            if (!fs.exists(dir)) return blocks;
            for (FileStatus st : fs.listStatus(dir)) {
                String name = st.getPath().getName();
                if (!name.startsWith("block=")) continue;
                try {
                    blocks.add(Integer.parseInt(name.substring("block=".length())));
                } catch (NumberFormatException e) {
                    throw new ModelFormatException(st.getPath() + ": folder name is not block=<integer>");
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(dir + ": cannot list (" + e.getMessage() + ")", e);
        }
        blocks.sort(null);
        return blocks;
    }

    /** The Parquet row of a tensor ({@link #TENSORS_FILE_SCHEMA}). */
    public static Row toRow(TensorRecord t) {
        List<Long> list = new ArrayList<>(t.shape().length);
        for (long d : t.shape()) list.add(d);
        // a Scala Seq: rows made on executors go through the RDD encoder, which takes no java.util.List
        scala.collection.immutable.Seq<Long> shape = scala.jdk.javaapi.CollectionConverters.asScala(list).toList();
        return RowFactory.create(t.module(), t.kind(), t.dtype(), shape, t.bits(), t.groupSize(), t.format(),
                (long) t.data().length, t.checksum(), t.data(), t.part());
    }

    /** A record from a row of {@link #TENSORS_FILE_SCHEMA}; {@code where} names the folder for errors. */
    static TensorRecord fromRow(int block, Row r, Path where) {
        List<Object> shapeList = r.getList(r.fieldIndex("shape"));
        long[] shape = new long[shapeList.size()];
        for (int i = 0; i < shape.length; i++) shape[i] = ((Number) shapeList.get(i)).longValue();
        byte[] data = r.getAs("data");
        TensorRecord t;
        try {
            t = new TensorRecord(block, r.getAs("module"), r.getAs("kind"), r.getAs("dtype"), shape,
                    r.<Integer>getAs("bits"), r.<Integer>getAs("group_size"), r.getAs("format"), data,
                    r.getAs("checksum"), r.isNullAt(r.fieldIndex("part")) ? 0 : r.<Integer>getAs("part"));
        } catch (IllegalArgumentException | NullPointerException e) {
            throw new ModelFormatException(where + ": a stored tensor is not valid: " + e.getMessage(), e);
        }
        long bytes = r.<Long>getAs("bytes");
        if (bytes != data.length) {
            throw new ModelFormatException(where + ": " + t.describe() + ": column bytes says " + bytes
                    + ", data has " + data.length + " bytes: the tensor data is corrupt");
        }
        return t;
    }

    static Row toRow(LayerError e) {
        return RowFactory.create(e.module(), e.relativeOutputError(), e.gptqLoss(), e.calibrationTokens());
    }

    /** A layer error from a row of {@link #LAYER_ERRORS_SCHEMA}; {@code where} names the table for errors. */
    static LayerError layerErrorFromRow(Row r, Path where) {
        try {
            return new LayerError(r.<Integer>getAs("block"), r.getAs("module"), r.<Double>getAs("relative_output_error"),
                    r.<Double>getAs("gptq_loss"), r.<Long>getAs("calibration_tokens"));
        } catch (IllegalArgumentException | NullPointerException e) {
            throw new ModelFormatException(where + ": a stored layer error is not valid: " + e.getMessage(), e);
        }
    }

    // ---- JSON files ----

    static String toJson(Object value) {
        try {
            return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("cannot write as JSON: " + e.getMessage(), e);
        }
    }

    /** Throws naming {@code what} unless {@code json} parses. */
    static void checkJson(String what, String json) {
        try {
            JSON.readTree(json);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException(what + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        }
    }

    static String readText(FileSystem fs, Path file) {
        try (InputStream in = fs.open(file)) {
            return new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        } catch (java.io.FileNotFoundException e) {
            throw new ModelFormatException(file + ": no such file in the model store", e);
        } catch (IOException e) {
            throw new UncheckedIOException(file + ": cannot read (" + e.getMessage() + ")", e);
        }
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> readJsonObject(FileSystem fs, Path file) {
        String text = readText(fs, file);
        try {
            Object v = JSON.readValue(text, Object.class);
            if (!(v instanceof Map)) throw new ModelFormatException(file + ": expected a JSON object");
            return (Map<String, Object>) v;
        } catch (JsonProcessingException e) {
            throw new ModelFormatException(file + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        }
    }

    /** format_version of a _manifest.json / _store.json; throws when missing or newer than this code reads. */
    static int checkFormatVersion(Path file, Map<String, Object> json) {
        Object v = json.get(K_FORMAT_VERSION);
        if (!(v instanceof Number n) || n.doubleValue() != Math.rint(n.doubleValue())) {
            throw new ModelFormatException(file + ": key " + K_FORMAT_VERSION + " is " + v + ", expected an integer");
        }
        int version = n.intValue();
        if (version > FORMAT_VERSION) {
            throw new ModelFormatException(file + ": written in model store format_version " + version
                    + ", this blockquant reads format_version " + FORMAT_VERSION + " and older; use a newer blockquant");
        }
        if (version < 1) {
            throw new ModelFormatException(file + ": key " + K_FORMAT_VERSION + " is " + version + ", expected 1.."
                    + FORMAT_VERSION);
        }
        return version;
    }

    static String fingerprintOf(Path file, Map<String, Object> json) {
        Object v = json.get(K_FINGERPRINT);
        if (!(v instanceof String s)) {
            throw new ModelFormatException(file + ": key " + K_FINGERPRINT + " is " + v + ", expected a string");
        }
        return s;
    }

    /**
     * Writes {@code bytes} to {@code target}, replacing an earlier version so that a reader sees the old file or
     * the whole new one, never neither ({@link FileReplace}); {@code staging} is unused since version 2's replace.
     */
    static void writeAtomically(FileSystem fs, Path staging, Path target, byte[] bytes) {
        FileReplace.replace(fs, target, bytes);
    }

    /** Best-effort removal of what a failed write left; the error being thrown says more than this one would. */
    static void deleteQuietly(FileSystem fs, Path p) {
        try {
            fs.delete(p, true);
        } catch (IOException | RuntimeException ignored) {
            // the store is unfinished either way: readers refuse it, --resume clears staging
        }
    }

    /**
     * What a failed write says went wrong: the innermost I/O error's message (a Spark write failure wraps the
     * file system's "No space left on device" in two or three layers), else the error's first line.
     */
    static String reasonOf(Throwable error) {
        String reason = null;
        for (Throwable t = error; t != null && reason == null; t = t.getCause() == t ? null : t.getCause()) {
            if (t instanceof IOException && t.getMessage() != null) reason = t.getMessage();
        }
        if (reason == null) reason = String.valueOf(error.getMessage());
        int nl = reason.indexOf('\n');
        return nl < 0 ? reason : reason.substring(0, nl);
    }

    /**
     * Renames the folder {@code src} to {@code dst} (creating dst's parent); replaces an existing dst only if asked
     * to, which callers do only for folders of an uncommitted block (files go through {@link FileReplace}).
     */
    static void moveInto(FileSystem fs, Path src, Path dst, boolean replace) throws IOException {
        if (fs.exists(dst)) {
            if (!replace) throw new IOException(dst + " already exists");
            if (!fs.delete(dst, true)) throw new IOException("cannot delete " + dst + " to replace it");
        }
        fs.mkdirs(dst.getParent());
        if (!fs.rename(src, dst)) throw new IOException("cannot rename " + src + " to " + dst);
    }

    static Map<String, Object> orderedMap() {
        return new LinkedHashMap<>();
    }
}
