package io.blockquant.store;

import static org.junit.jupiter.api.Assertions.*;

import io.blockquant.model.ModelFormatException;
import io.blockquant.spark.SparkSessions;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Unfinished stores, --resume, and the stores a writer or reader must refuse. */
class StoreLifecycleTest {

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

    private Path path(String name) {
        return new Path(tmp.resolve(name).toUri());
    }

    private FileSystem fs() throws Exception {
        return new Path(tmp.toUri()).getFileSystem(spark.sparkContext().hadoopConfiguration());
    }

    /** Every file under dir with its length, modification time and CRC32C. */
    private Map<String, String> snapshot(Path dir) throws Exception {
        FileSystem fs = fs();
        Map<String, String> out = new TreeMap<>();
        RemoteIterator<LocatedFileStatus> it = fs.listFiles(dir, true);
        while (it.hasNext()) {
            LocatedFileStatus st = it.next();
            byte[] bytes;
            try (var in = fs.open(st.getPath())) {
                bytes = in.readAllBytes();
            }
            out.put(st.getPath().toString(), st.getLen() + "/" + st.getModificationTime() + "/" + TensorRecord.crc32c(bytes));
        }
        return out;
    }

    @Test
    void unfinishedStoreIsNotAModelAndResumeSkipsCommittedBlocks() throws Exception {
        String path = store("partial");
        List<TensorRecord> b0 = StoreSamples.block(0, 4, 40);
        List<TensorRecord> b1 = StoreSamples.block(1, 4, 41);
        StoreWriter first = StoreWriter.create(spark, path, "fp-A", false);
        first.commitBlock(0, b0, StoreSamples.errors(0, 50));
        first.commitBlock(1, b1, StoreSamples.errors(1, 51));
        // the job dies here: no commit()

        ModelFormatException e = assertThrows(ModelFormatException.class, () -> StoreReader.open(spark, path));
        assertTrue(e.getMessage().contains("is not a finished model store (no _manifest.json): the job that wrote it "
                + "did not complete; re-run quantize with --resume"), e.getMessage());
        assertTrue(e.getMessage().contains("partial"), e.getMessage());

        // without --resume the partial store is refused
        e = assertThrows(ModelFormatException.class, () -> StoreWriter.create(spark, path, "fp-A", false));
        assertTrue(e.getMessage().contains("use --resume to continue it or delete it"), e.getMessage());

        // leftovers of an interrupted commit of block 2: staging, and layer errors without tensors
        FileSystem fs = fs();
        write(fs, new Path(path("partial"), "_tmp/dead/tensors/part-0.parquet"), "junk");
        write(fs, new Path(path("partial"), "layer_errors/block=2/part-0.parquet"), "junk");
        write(fs, new Path(path("partial"), "tensors/block=2/part-0.parquet"), "junk");
        write(fs, new Path(path("partial"), "tensors/block=7/part-0.parquet"), "junk");

        Map<String, String> before = snapshot(new Path(path("partial"), "tensors/block=0"));
        before.putAll(snapshot(new Path(path("partial"), "tensors/block=1")));
        Map<String, String> errorsBefore = snapshot(new Path(path("partial"), "layer_errors/block=0"));
        Thread.sleep(1100); // a rewrite would show a later modification time

        StoreWriter resumed = StoreWriter.create(spark, path, "fp-A", true);
        assertFalse(fs.exists(new Path(path("partial"), "_tmp/dead")), "stale staging is cleared on resume");
        assertTrue(resumed.isBlockCommitted(0));
        assertTrue(resumed.isBlockCommitted(1));
        assertFalse(resumed.isBlockCommitted(2), "a tensors folder without its marker is not committed");
        assertFalse(resumed.isBlockCommitted(7));
        assertEquals(List.of(0, 1), resumed.committedBlocks());
        // the resumed job hands in blocks 0 and 1 again (different numbers): they are skipped
        resumed.commitBlock(0, StoreSamples.block(0, 4, 999), StoreSamples.errors(0, 998));
        resumed.commitBlock(1, StoreSamples.block(1, 2, 997), List.of());
        Map<String, String> after = snapshot(new Path(path("partial"), "tensors/block=0"));
        after.putAll(snapshot(new Path(path("partial"), "tensors/block=1")));
        assertEquals(before, after, "committed blocks untouched");
        assertEquals(errorsBefore, snapshot(new Path(path("partial"), "layer_errors/block=0")));
        List<TensorRecord> b2 = StoreSamples.block(2, 4, 42);
        resumed.commitBlock(2, b2, StoreSamples.errors(2, 52));
        resumed.commitModelTensors(StoreSamples.modelTensors(8, 43));
        resumed.commit(Map.of("resumed", true));

        StoreReader r = StoreReader.open(spark, path);
        assertEquals(StoreSamples.sorted(b0), r.tensors(0));
        assertEquals(StoreSamples.sorted(b1), r.tensors(1));
        assertEquals(StoreSamples.sorted(b2), r.tensors(2));
        assertEquals(List.of(0, 1, 2), r.blocks());
        assertFalse(fs.exists(new Path(path("partial"), "tensors/block=7")), "uncommitted folders removed by commit");
        assertEquals(3 * b0.size() + 3L, r.tensorsTable().count());
        assertEquals(3, ((Number) r.manifest().get("num_blocks")).intValue());
        assertEquals(Boolean.TRUE, r.manifest().get("resumed"));
        List<LayerError> errors = r.layerErrors();
        assertEquals(21, errors.size());
        assertEquals(StoreSamples.errors(2, 52).stream().sorted(java.util.Comparator.comparing(LayerError::module)).toList(),
                errors.stream().filter(x -> x.block() == 2).toList(), "stale layer errors of block 2 replaced");
        assertEquals(StoreSamples.errors(0, 50).stream().sorted(java.util.Comparator.comparing(LayerError::module)).toList(),
                errors.stream().filter(x -> x.block() == 0).toList(), "first run's errors kept");
        assertThrows(IllegalStateException.class, () -> resumed.commitBlock(3, List.of(), List.of()));
    }

    @Test
    void committingTheSameBlockTwiceKeepsTheFirst() throws Exception {
        String path = store("twice");
        List<TensorRecord> b0 = StoreSamples.block(0, 4, 60);
        StoreWriter w = StoreWriter.create(spark, path, "fp-T", false);
        w.commitBlock(0, b0, StoreSamples.errors(0, 61));
        Map<String, String> before = snapshot(path("twice"));
        Thread.sleep(1100);
        w.commitBlock(0, StoreSamples.block(0, 8, 62), StoreSamples.errors(0, 63));
        assertEquals(before, snapshot(path("twice")));
        w.commit(Map.of());
        assertEquals(StoreSamples.sorted(b0), StoreReader.open(spark, path).tensors(0));
    }

    @Test
    void refusesAnotherModelsStore() {
        String path = store("other");
        StoreWriter w = StoreWriter.create(spark, path, "sha256:model-A", false);
        w.commitBlock(0, StoreSamples.block(0, 4, 70), List.of());
        // unfinished store of model A, job for model B
        ModelFormatException e = assertThrows(ModelFormatException.class,
                () -> StoreWriter.create(spark, path, "sha256:model-B", true));
        assertTrue(e.getMessage().contains("already holds a different model (fingerprint sha256:model-A, this job "
                + "sha256:model-B); choose another --out or delete it"), e.getMessage());
        assertTrue(e.getMessage().contains("other"), e.getMessage());
        // finished store of model A
        w.commit(Map.of());
        e = assertThrows(ModelFormatException.class, () -> StoreWriter.create(spark, path, "sha256:model-B", true));
        assertTrue(e.getMessage().contains("fingerprint sha256:model-A, this job sha256:model-B"), e.getMessage());
        e = assertThrows(ModelFormatException.class, () -> StoreWriter.create(spark, path, "sha256:model-B", false));
        assertTrue(e.getMessage().contains("fingerprint sha256:model-A, this job sha256:model-B"), e.getMessage());
    }

    @Test
    void finishedStoreNeedsResume() throws Exception {
        String path = store("done");
        List<TensorRecord> b0 = StoreSamples.block(0, 4, 80);
        StoreWriter w = StoreWriter.create(spark, path, "fp-D", false);
        w.commitBlock(0, b0, List.of());
        w.commit(Map.of());
        ModelFormatException e = assertThrows(ModelFormatException.class,
                () -> StoreWriter.create(spark, path, "fp-D", false));
        assertTrue(e.getMessage().contains("already holds a finished model store; use --resume or another --out"),
                e.getMessage());
        // with --resume every block is already there; committing again keeps the data
        StoreWriter again = StoreWriter.create(spark, path, "fp-D", true);
        assertTrue(again.isBlockCommitted(0));
        again.commitBlock(0, StoreSamples.block(0, 4, 81), List.of());
        again.commit(Map.of());
        StoreReader r = StoreReader.open(spark, path);
        assertEquals(StoreSamples.sorted(b0), r.tensors(0));
        assertEquals(w.fingerprint(), r.fingerprint());
    }

    @Test
    void newerFormatVersionIsRefusedByWriterAndReader() throws Exception {
        String path = store("future");
        StoreWriter w = StoreWriter.create(spark, path, "fp-F", false);
        w.commitBlock(0, StoreSamples.block(0, 4, 90), List.of());
        w.commit(Map.of());
        write(fs(), new Path(path("future"), "_manifest.json"),
                "{\"format_version\": 99, \"model_fingerprint\": \"fp-F\", \"num_blocks\": 1}");
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> StoreReader.open(spark, path));
        assertTrue(e.getMessage().contains("_manifest.json: written in model store format_version 99, this blockquant "
                + "reads format_version " + StoreLayout.FORMAT_VERSION), e.getMessage());
        e = assertThrows(ModelFormatException.class, () -> StoreWriter.create(spark, path, "fp-F", true));
        assertTrue(e.getMessage().contains("format_version 99"), e.getMessage());
        assertTrue(e.getMessage().contains("format_version " + StoreLayout.FORMAT_VERSION), e.getMessage());

        // an unfinished store from a newer version: _store.json says so
        String partial = store("future-partial");
        StoreWriter.create(spark, partial, "fp-F", false);
        write(fs(), new Path(path("future-partial"), "_store.json"),
                "{\"format_version\": " + (StoreLayout.FORMAT_VERSION + 1) + ", \"model_fingerprint\": \"fp-F\"}");
        e = assertThrows(ModelFormatException.class, () -> StoreWriter.create(spark, partial, "fp-F", true));
        assertTrue(e.getMessage().contains("_store.json: written in model store format_version "
                + (StoreLayout.FORMAT_VERSION + 1)), e.getMessage());
    }

    @Test
    void refusesWhatIsNotAStore() throws Exception {
        ModelFormatException e = assertThrows(ModelFormatException.class,
                () -> StoreReader.open(spark, store("nowhere")));
        assertTrue(e.getMessage().endsWith("nowhere: no such model store"), e.getMessage());

        FileSystem fs = fs();
        write(fs, new Path(path("stuff"), "notes.txt"), "not a store");
        e = assertThrows(ModelFormatException.class, () -> StoreWriter.create(spark, store("stuff"), "fp", true));
        assertTrue(e.getMessage().contains("exists and is not a model store"), e.getMessage());
        assertTrue(e.getMessage().contains("notes.txt"), e.getMessage());
        e = assertThrows(ModelFormatException.class, () -> StoreReader.open(spark, store("stuff")));
        assertTrue(e.getMessage().contains("is not a model store (no _manifest.json, no _store.json)"), e.getMessage());

        write(fs, path("afile"), "x");
        e = assertThrows(ModelFormatException.class, () -> StoreWriter.create(spark, store("afile"), "fp", false));
        assertTrue(e.getMessage().contains("afile is a file"), e.getMessage());

        write(fs, new Path(path("broken"), "_manifest.json"), "{\"format_version\": 1}");
        e = assertThrows(ModelFormatException.class, () -> StoreReader.open(spark, store("broken")));
        assertTrue(e.getMessage().contains("_manifest.json: key model_fingerprint is null, expected a string"),
                e.getMessage());

        // an empty folder is a fine place for a new store
        assertTrue(fs.mkdirs(path("empty")));
        StoreWriter w = StoreWriter.create(spark, store("empty"), "fp-E", false);
        assertTrue(fs.exists(new Path(path("empty"), "_store.json")));
        assertEquals(List.of(), w.committedBlocks());
        FileStatus info = fs.getFileStatus(new Path(path("empty"), "_store.json"));
        assertTrue(info.getLen() > 0);
    }

    static void write(FileSystem fs, Path p, String text) throws Exception {
        try (OutputStream out = fs.create(p, true)) {
            out.write(text.getBytes(StandardCharsets.UTF_8));
        }
    }
}
