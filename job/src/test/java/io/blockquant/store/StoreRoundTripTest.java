package io.blockquant.store;

import static org.junit.jupiter.api.Assertions.*;

import io.blockquant.model.ModelFormatException;
import io.blockquant.spark.SparkSessions;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StoreRoundTripTest {

    static SparkSession spark;

    @BeforeAll
    static void start() {
        spark = SparkSessions.getOrCreate("store-test", "local[2]");
    }

    @AfterAll
    static void stop() {
        if (spark != null) spark.stop();
    }

    @TempDir
    java.nio.file.Path tmp;

    private String store(String name) {
        return tmp.resolve(name).toUri().toString();
    }

    private FileSystem fs() throws Exception {
        return new Path(tmp.toUri()).getFileSystem(spark.sparkContext().hadoopConfiguration());
    }

    @Test
    void writesAndReadsBackEveryRecordBitForBit() throws Exception {
        String path = store("out");
        List<TensorRecord> b0 = StoreSamples.block(0, 4, 10);
        List<TensorRecord> b1 = StoreSamples.block(1, 3, 11);
        List<TensorRecord> top = StoreSamples.modelTensors(32, 12);
        List<LayerError> e0 = StoreSamples.errors(0, 20);
        List<LayerError> e1 = StoreSamples.errors(1, 21);

        // model files and a recipe, from any Hadoop path
        FileSystem fs = fs();
        Path config = new Path(new Path(tmp.toUri()), "src/config.json");
        Path tokenizer = new Path(new Path(tmp.toUri()), "src/tokenizer.json");
        write(fs, config, "{\"model_type\":\"llama\",\"hidden_size\":16}");
        write(fs, tokenizer, "{\"model\":{\"type\":\"BPE\"}}");

        StoreWriter w = StoreWriter.create(spark, path, "sha256:abc", false);
        w.copyModelFile(config, "config.json");
        w.copyModelFile(tokenizer, "tokenizer.json");
        w.writeJson("recipe.json", "{\"method\":\"gptq\",\"wbits\":4}");
        w.commitBlock(1, b1, e1);   // blocks may come in any order
        w.commitModelTensors(top);
        w.commitBlock(0, b0, e0);
        assertTrue(w.isBlockCommitted(0));
        assertTrue(w.isBlockCommitted(1));
        assertTrue(w.isBlockCommitted(-1));
        assertFalse(w.isBlockCommitted(2));
        assertEquals(List.of(0, 1), w.committedBlocks());
        Map<String, Object> fields = new LinkedHashMap<>();
        fields.put("method", "gptq");
        fields.put("wbits", 4);
        w.commit(fields);

        Path root = new Path(new Path(tmp.toUri()), "out");
        assertFalse(fs.exists(new Path(root, "_tmp")), "_tmp is removed by commit");
        assertTrue(fs.exists(new Path(root, "tensors/block=0")));
        assertTrue(fs.exists(new Path(root, "tensors/block=-1")));
        assertTrue(fs.exists(new Path(root, "layer_errors/block=1")));

        StoreReader r = StoreReader.open(spark, path);
        assertEquals(StoreSamples.sorted(b0), r.tensors(0));
        assertEquals(StoreSamples.sorted(b1), r.tensors(1));
        assertEquals(StoreSamples.sorted(top), r.modelTensors());
        List<LayerError> errors = new ArrayList<>(e0);
        errors.addAll(e1);
        errors.sort(java.util.Comparator.comparingInt(LayerError::block).thenComparing(LayerError::module));
        assertEquals(errors, r.layerErrors());
        assertEquals(List.of(0, 1), r.blocks());

        // checksums are the ones computed at write time, and levels decode
        TensorRecord q = r.tensors(1).stream()
                .filter(t -> t.module().equals("self_attn.q_proj") && t.kind().equals("qweight")).findFirst().orElseThrow();
        TensorRecord q0 = b1.stream()
                .filter(t -> t.module().equals("self_attn.q_proj") && t.kind().equals("qweight")).findFirst().orElseThrow();
        assertEquals(q0.checksum(), q.checksum());
        assertArrayEquals(q0.levels(), q.levels());
        assertEquals("uint3-packed", q.dtype());

        Map<String, Object> m = r.manifest();
        assertEquals(2, ((Number) m.get("format_version")).intValue()); // 2: block -1 in parts, in the checkpoint's dtype
        assertEquals("sha256:abc", m.get("model_fingerprint"));
        assertEquals("sha256:abc", r.fingerprint());
        assertEquals(2, ((Number) m.get("num_blocks")).intValue());
        assertEquals(List.of(0, 1), m.get("blocks"));
        assertEquals(Boolean.TRUE, m.get("model_tensors"));
        assertTrue(((Number) m.get("total_bytes")).longValue() > 0);
        assertNotNull(m.get("created"));
        assertNotNull(m.get("finished"));
        assertEquals("gptq", m.get("method"));
        assertEquals(4, ((Number) m.get("wbits")).intValue());
        assertThrows(UnsupportedOperationException.class, () -> r.manifest().put("x", 1));

        assertEquals("{\"method\":\"gptq\",\"wbits\":4}", r.readJson("recipe.json"));
        assertEquals(new Path(root, "model"), r.modelDir());
        assertEquals("{\"model_type\":\"llama\",\"hidden_size\":16}",
                read(fs, new Path(r.modelDir(), "config.json")));
        assertEquals("{\"model\":{\"type\":\"BPE\"}}", read(fs, new Path(r.modelDir(), "tokenizer.json")));
        ModelFormatException missing = assertThrows(ModelFormatException.class, () -> r.readJson("nope.json"));
        assertTrue(missing.getMessage().contains("nope.json"), missing.getMessage());
        ModelFormatException noBlock = assertThrows(ModelFormatException.class, () -> r.tensors(7));
        assertTrue(noBlock.getMessage().contains("block 7 is not in the model store"), noBlock.getMessage());
    }

    @Test
    void tensorsAndLayerErrorsAreSqlTables() {
        String path = store("sql");
        StoreWriter w = StoreWriter.create(spark, path, "fp-sql", false);
        w.commitBlock(0, StoreSamples.block(0, 4, 1), StoreSamples.errors(0, 2));
        w.commitBlock(1, StoreSamples.block(1, 4, 3), StoreSamples.errors(1, 4));
        w.commitModelTensors(StoreSamples.modelTensors(8, 5));
        w.commit(Map.of());

        StoreReader r = StoreReader.open(spark, path);
        Dataset<Row> tensors = r.tensorsTable();
        assertArrayEquals(StoreLayout.TENSORS_SCHEMA.fieldNames(), tensors.schema().fieldNames());
        assertEquals("IntegerType", tensors.schema().apply("block").dataType().toString());
        tensors.createOrReplaceTempView("tensors");
        r.layerErrorsTable().createOrReplaceTempView("layer_errors");

        Map<String, Long> byKind = new HashMap<>();
        for (Row row : spark.sql("SELECT kind, count(*) AS n FROM tensors GROUP BY kind").collectAsList()) {
            byKind.put(row.getString(0), row.getLong(1));
        }
        // 7 linear layers per block, two blocks; 2 norms per block; 3 model-level tensors
        assertEquals(Map.of("qweight", 14L, "scales", 14L, "zeros", 14L, "g_idx", 14L, "weight", 7L), byKind);

        List<Row> perBlock = spark.sql("SELECT block, count(*), sum(bytes) FROM tensors GROUP BY block ORDER BY block")
                .collectAsList();
        assertEquals(List.of(-1, 0, 1), perBlock.stream().map(x -> x.getInt(0)).toList());
        assertEquals(3L, perBlock.get(0).getLong(1));
        assertEquals(30L, perBlock.get(1).getLong(1));
        long dataBytes = r.tensors(0).stream().mapToLong(t -> t.data().length).sum();
        assertEquals(dataBytes, perBlock.get(1).getLong(2));

        Row q = spark.sql("SELECT dtype, shape, bits, group_size, format, length(data) = bytes FROM tensors "
                + "WHERE block = 1 AND module = 'self_attn.q_proj' AND kind = 'qweight'").first();
        assertEquals("uint4-packed", q.getString(0));
        assertEquals(List.of(16L, 16L), q.getList(1));
        assertEquals(4, q.getInt(2));
        assertEquals(8, q.getInt(3));
        assertEquals("int-asym", q.getString(4));
        assertTrue(q.getBoolean(5));

        Row worst = spark.sql("SELECT block, count(*), max(relative_output_error) FROM layer_errors "
                + "WHERE block = 0 GROUP BY block").first();
        assertEquals(7L, worst.getLong(1));
        double expected = StoreSamples.errors(0, 2).stream().mapToDouble(LayerError::relativeOutputError).max().orElseThrow();
        assertEquals(expected, worst.getDouble(2));
    }

    @Test
    void blocksWrittenInSeveralChunksReadBackWhole() throws Exception {
        String path = store("chunks");
        List<TensorRecord> b0 = StoreSamples.block(0, 8, 99);
        StoreWriter w = StoreWriter.create(spark, path, "fp-chunks", false).chunkBytes(300);
        w.commitBlock(0, b0, List.of());   // a block without layer errors
        w.commitModelTensors(StoreSamples.modelTensors(4, 98));
        w.commit(Map.of());

        FileSystem fs = fs();
        Path dir = new Path(new Path(tmp.toUri()), "chunks/tensors/block=0");
        long parquetFiles = 0;
        for (FileStatus st : fs.listStatus(dir)) if (st.getPath().getName().endsWith(".parquet")) parquetFiles++;
        assertTrue(parquetFiles > 1, "expected several Parquet files, got " + parquetFiles);

        StoreReader r = StoreReader.open(spark, path);
        assertEquals(StoreSamples.sorted(b0), r.tensors(0));
        assertEquals(List.of(), r.layerErrors());
        assertEquals(b0.size() + 3L, r.tensorsTable().count());
    }

    @Test
    void rejectsMismatchedOrCorruptRecords() {
        StoreWriter w = StoreWriter.create(spark, store("bad"), "fp-bad", false);
        List<TensorRecord> b0 = StoreSamples.block(0, 4, 7);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> w.commitBlock(1, b0, List.of()));
        assertTrue(e.getMessage().contains("block 0 module self_attn.q_proj kind qweight handed in to commit block 1"),
                e.getMessage());
        List<TensorRecord> twice = new ArrayList<>(b0);
        twice.add(b0.get(0));
        e = assertThrows(IllegalArgumentException.class, () -> w.commitBlock(0, twice, List.of()));
        assertTrue(e.getMessage().contains("appears twice"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> w.commitBlock(-1, b0, List.of()));
        assertTrue(e.getMessage().contains("block -1"), e.getMessage());

        List<TensorRecord> corrupt = StoreSamples.block(0, 4, 7);
        corrupt.get(5).data()[0] ^= 0x40;
        ModelFormatException c = assertThrows(ModelFormatException.class, () -> w.commitBlock(0, corrupt, List.of()));
        assertTrue(c.getMessage().contains(corrupt.get(5).describe()), c.getMessage());
        assertFalse(w.isBlockCommitted(0), "nothing committed from a rejected block");

        e = assertThrows(IllegalArgumentException.class, () -> w.writeJson("recipe.json", "{not json"));
        assertTrue(e.getMessage().contains("recipe.json: not valid JSON"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> w.writeJson("_manifest.json", "{}"));
        assertTrue(e.getMessage().contains("_manifest.json"), e.getMessage());
        ModelFormatException m = assertThrows(ModelFormatException.class,
                () -> w.copyModelFile(new Path(tmp.resolve("absent.json").toUri()), "config.json"));
        assertTrue(m.getMessage().contains("absent.json: no such file"), m.getMessage());

        // a gap in the blocks is not a model
        w.commitBlock(1, StoreSamples.block(1, 4, 8), List.of());
        ModelFormatException gap = assertThrows(ModelFormatException.class, () -> w.commit(Map.of()));
        assertTrue(gap.getMessage().contains("block 0 is not committed (committed blocks: [1])"), gap.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> {
            w.commitBlock(0, StoreSamples.block(0, 4, 7), List.of());
            w.commit(Map.of("format_version", 7));
        });
        assertTrue(e.getMessage().contains("key format_version is written by the store itself"), e.getMessage());
    }

    @Test
    void corruptDataOnDiskIsReportedByBlockModuleKind() throws Exception {
        String path = store("rot");
        StoreWriter w = StoreWriter.create(spark, path, "fp-rot", false);
        w.commitBlock(0, StoreSamples.block(0, 4, 31), List.of());
        w.commit(Map.of());
        // rewrite block 0's Parquet with one flipped byte in one tensor, checksum column unchanged
        Path dir = new Path(new Path(tmp.toUri()), "rot/tensors/block=0");
        List<Row> rows = new ArrayList<>(spark.read().schema(StoreLayout.TENSORS_FILE_SCHEMA).parquet(dir.toString())
                .collectAsList());
        Row victim = rows.stream().filter(x -> x.getString(0).equals("mlp.up_proj") && x.getString(1).equals("scales"))
                .findFirst().orElseThrow();
        byte[] data = ((byte[]) victim.get(9)).clone();
        data[3] ^= 0x01;
        Object[] values = new Object[victim.size()];
        for (int i = 0; i < values.length; i++) values[i] = victim.get(i);
        values[9] = data;
        rows.set(rows.indexOf(victim), org.apache.spark.sql.RowFactory.create(values));
        Path rewritten = new Path(new Path(tmp.toUri()), "rot-rewritten");
        spark.createDataFrame(rows, StoreLayout.TENSORS_FILE_SCHEMA).coalesce(1).write().parquet(rewritten.toString());
        FileSystem fs = fs();
        assertTrue(fs.delete(dir, true));
        assertTrue(fs.rename(rewritten, dir));

        StoreReader r = StoreReader.open(spark, path);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> r.tensors(0));
        assertTrue(e.getMessage().contains("block 0 module mlp.up_proj kind scales: checksum mismatch"), e.getMessage());
        assertTrue(e.getMessage().contains("tensors/block=0"), e.getMessage());
    }

    static void write(FileSystem fs, Path p, String text) throws Exception {
        try (OutputStream out = fs.create(p, true)) {
            out.write(text.getBytes(StandardCharsets.UTF_8));
        }
    }

    static String read(FileSystem fs, Path p) throws Exception {
        try (var in = fs.open(p)) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }
}
