package io.blockquant.store;

import static io.blockquant.store.StoreLayout.*;

import io.blockquant.model.ModelFormatException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.StructType;

/** Reads a finished model store (one with {@code _manifest.json}); see {@link StoreLayout}. */
public final class StoreReader {

    private final SparkSession spark;
    private final FileSystem fs;
    private final Path root;
    private final Map<String, Object> manifest;

    private StoreReader(SparkSession spark, FileSystem fs, Path root, Map<String, Object> manifest) {
        this.spark = spark;
        this.fs = fs;
        this.root = root;
        this.manifest = manifest;
    }

    public static StoreReader open(SparkSession spark, String storePath) {
        Path given = new Path(storePath);
        try {
            FileSystem fs = given.getFileSystem(spark.sparkContext().hadoopConfiguration());
            Path root = fs.makeQualified(given);
            if (!fs.exists(root)) throw new ModelFormatException(root + ": no such model store");
            // mid-replace (a crash between renames), the whole new manifest is read from beside it
            Path manifestPath = FileReplace.readable(fs, new Path(root, MANIFEST));
            if (manifestPath == null) {
                if (!fs.getFileStatus(root).isDirectory() || !fs.exists(new Path(root, STORE_INFO))) {
                    throw new ModelFormatException(root + " is not a model store (no " + MANIFEST + ", no "
                            + STORE_INFO + "): expected the folder written by quantize --out");
                }
                throw new ModelFormatException(root + " is not a finished model store (no " + MANIFEST
                        + "): the job that wrote it did not complete; re-run quantize with --resume " + root
                        + " or delete it");
            }
            Map<String, Object> manifest = readJsonObject(fs, manifestPath);
            checkFormatVersion(manifestPath, manifest);
            fingerprintOf(manifestPath, manifest);
            return new StoreReader(spark, fs, root, Collections.unmodifiableMap(new LinkedHashMap<>(manifest)));
        } catch (IOException e) {
            throw new UncheckedIOException(storePath + ": cannot open the model store (" + e.getMessage() + ")", e);
        }
    }

    public Path root() {
        return root;
    }

    /** The parsed {@code _manifest.json} (read-only). */
    public Map<String, Object> manifest() {
        return manifest;
    }

    public String fingerprint() {
        return (String) manifest.get(K_FINGERPRINT);
    }

    /** Transformer blocks in the store, ascending, as the manifest lists them (block -1 left out). */
    public List<Integer> blocks() {
        Path file = new Path(root, MANIFEST);
        if (!(manifest.get(K_BLOCKS) instanceof List<?> list)) {
            throw new ModelFormatException(file + ": key " + K_BLOCKS + " is " + manifest.get(K_BLOCKS)
                    + ", expected a list of block numbers");
        }
        List<Integer> blocks = new ArrayList<>(list.size());
        for (Object o : list) {
            if (!(o instanceof Integer || o instanceof Long) || ((Number) o).longValue() < 0
                    || ((Number) o).longValue() > Integer.MAX_VALUE) {
                throw new ModelFormatException(file + ": key " + K_BLOCKS + " holds " + o
                        + ", expected block numbers (integers >= 0)");
            }
            Number n = (Number) o;
            blocks.add(n.intValue());
        }
        return blocks;
    }

    /**
     * The tensors of one block on the driver, checksums verified, split tensors joined, ordered by module then
     * kind: for small stores, tests and reports; jobs read blocks on executors ({@link StoreTensors}).
     */
    public List<TensorRecord> tensors(int block) {
        Path dir = blockDir(root, TENSORS, block);
        try {
            if (!fs.exists(dir)) {
                throw new ModelFormatException(dir + ": block " + block + " is not in the model store (blocks "
                        + listBlocks(fs, root, TENSORS) + ")");
            }
        } catch (IOException e) {
            throw new UncheckedIOException(dir + ": cannot check (" + e.getMessage() + ")", e);
        }
        List<Row> rows = spark.read().schema(TENSORS_FILE_SCHEMA).parquet(dir.toString()).collectAsList();
        List<Object> out = new ArrayList<>(rows.size());
        for (Row r : rows) {
            TensorRecord t = fromRow(block, r, dir);
            try {
                t.verify();
            } catch (ModelFormatException e) {
                throw new ModelFormatException(dir + ": " + e.getMessage(), e);
            }
            out.add(t);
        }
        return StoreTensors.join(out, dir);
    }

    /** Embeddings, final norm, head: the tensors of block -1. */
    public List<TensorRecord> modelTensors() {
        return tensors(TensorRecord.MODEL_BLOCK);
    }

    /** Every layer's errors, ordered by block then module. */
    public List<LayerError> layerErrors() {
        List<LayerError> out = new ArrayList<>();
        Path where = new Path(root, LAYER_ERRORS);
        for (Row r : layerErrorsTable().collectAsList()) out.add(layerErrorFromRow(r, where));
        out.sort(Comparator.comparingInt(LayerError::block).thenComparing(LayerError::module));
        return out;
    }

    /** {@code STORE/model}: config.json and tokenizer.json of the quantized model. */
    public Path modelDir() {
        return new Path(root, MODEL);
    }

    /** The text of {@code STORE/name} (recipe.json, ...). */
    public String readJson(String name) {
        String problem = io.blockquant.model.PathSegment.problem(name);
        if (problem != null) {
            throw new IllegalArgumentException(root + ": file name '" + name + "' " + problem
                    + "; a store file is read only from inside the store (expected a plain name such as recipe.json)");
        }
        Path file = FileReplace.readable(fs, new Path(root, name));
        return readText(fs, file == null ? new Path(root, name) : file);
    }

    /** Every tensor of the store with its {@code block} column, for Spark SQL ({@link StoreLayout#TENSORS_SCHEMA}). */
    public Dataset<Row> tensorsTable() {
        return table(TENSORS, TENSORS_SCHEMA);
    }

    /** Every layer error with its {@code block} column ({@link StoreLayout#LAYER_ERRORS_SCHEMA}). */
    public Dataset<Row> layerErrorsTable() {
        return table(LAYER_ERRORS, LAYER_ERRORS_SCHEMA);
    }

    private Dataset<Row> table(String name, StructType schema) {
        Path dir = new Path(root, name);
        if (!exists(dir)) return spark.createDataFrame(List.of(), schema);
        Column[] cols = new Column[schema.fields().length];
        for (int i = 0; i < cols.length; i++) cols[i] = functions.col(schema.fields()[i].name());
        return spark.read().schema(schema).parquet(dir.toString()).select(cols);
    }

    private boolean exists(Path p) {
        try {
            return fs.exists(p);
        } catch (IOException e) {
            throw new UncheckedIOException(p + ": cannot check (" + e.getMessage() + ")", e);
        }
    }
}
