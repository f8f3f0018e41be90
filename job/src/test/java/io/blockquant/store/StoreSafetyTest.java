package io.blockquant.store;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.model.ModelFormatException;
import io.blockquant.spark.SparkSessions;
import java.io.OutputStream;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The store's lease (one writer), and replacing its files with a crash between any two steps. */
class StoreSafetyTest {

    static SparkSession spark;
    static final ObjectMapper JSON = new ObjectMapper();

    @BeforeAll
    static void start() {
        spark = SparkSessions.getOrCreate("store-safety-test", "local[1]");
    }

    @AfterAll
    static void stop() {
        if (spark != null) spark.stop();
    }

    @AfterEach
    void noCrash() {
        FileReplace.crashAfterStep = 0;
    }

    @TempDir
    java.nio.file.Path tmp;

    private Path path(String name) {
        return new Path(tmp.resolve(name).toUri());
    }

    private FileSystem fs() throws Exception {
        return path("x").getFileSystem(new Configuration());
    }

    private static void assertOneLine(Throwable e, String... parts) {
        for (String p : parts) assertTrue(e.getMessage().contains(p), "mentions '" + p + "': " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"), "one line: " + e.getMessage());
    }

    // ---- lease ----

    @Test
    void aSecondWriterIsRefusedNamingTheOwnerAndHostAndTheFirstKeepsItsStore() throws Exception {
        Configuration conf = new Configuration();
        String store = path("s").toString();
        Map<String, Object> record;
        try (StoreLease first = StoreLease.acquire(conf, store, false)) {
            record = first.record();
            for (boolean resume : new boolean[] {false, true}) { // a live heartbeat is not taken over, even by --resume
                ModelFormatException e = assertThrows(ModelFormatException.class, () -> StoreLease.acquire(conf, store, resume));
                assertOneLine(e, "is being written by " + record.get("owner") + "@" + record.get("host"),
                        "pid " + record.get("pid"), "a second writer is refused");
            }
            assertTrue(fs().exists(first.file()), "the refused run left the first one's lease alone");
        }
        assertFalse(fs().exists(path("s")), "released, and the folder it created (empty) is gone");
    }

    @Test
    void theHeartbeatRenewsTheLeaseAndAStaleOneIsTakenOverOnlyByResume() throws Exception {
        Configuration conf = new Configuration();
        conf.setLong(StoreLease.HEARTBEAT_SECONDS, 1);
        conf.setLong(StoreLease.STALE_SECONDS, 3);
        String store = path("s").toString();
        StoreLease dead = StoreLease.acquire(conf, store, false);
        long started = ((Number) dead.record().get("heartbeat_millis")).longValue();
        Thread.sleep(1600);
        long beat = ((Number) StoreLease.read(fs(), dead.file()).get("heartbeat_millis")).longValue();
        assertTrue(beat > started, "heartbeat renewed: " + started + " -> " + beat);

        // the owner dies without releasing: its heartbeat (as written) stops 10 s back
        @SuppressWarnings("unchecked")
        Map<String, Object> rec = new java.util.LinkedHashMap<>(StoreLease.read(fs(), dead.file()));
        rec.put("heartbeat_millis", System.currentTimeMillis() - 10_000);
        rec.put("token", "dead-run");
        try (OutputStream out = fs().create(dead.file(), true)) {
            out.write(JSON.writeValueAsBytes(rec));
        }
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> StoreLease.acquire(conf, store, false));
        assertOneLine(e, "whose heartbeat stopped more than 3 s ago", "--resume");
        try (StoreLease taker = StoreLease.acquire(conf, store, true)) {
            assertNotEquals("dead-run", taker.record().get("token"));
            assertEquals(taker.record().get("token"), StoreLease.read(fs(), taker.file()).get("token"));
            // the old owner's next beat or commit finds it lost and commits nothing
            IllegalStateException lost = assertThrows(IllegalStateException.class, dead::checkHeld);
            assertOneLine(lost, "lost its lease", "taken over by");
        } finally {
            dead.close();
        }
    }

    @Test
    void aWriterWhoseLeaseWasTakenCommitsNoBlock() throws Exception {
        String store = path("s").toString();
        try (StoreLease lease = StoreLease.acquire(spark.sparkContext().hadoopConfiguration(), store, false)) {
            StoreWriter w = StoreWriter.create(spark, store, "fp-A", false);
            w.commitBlock(0, StoreSamples.block(0, 4, 1), StoreSamples.errors(0, 2));
            try (OutputStream out = fs().create(lease.file(), true)) { // another run took the store over
                out.write("{\"token\":\"other\",\"owner\":\"bob\",\"host\":\"h2\",\"pid\":7,\"heartbeat_millis\":0}".getBytes());
            }
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> w.commitBlock(1, StoreSamples.block(1, 4, 3), StoreSamples.errors(1, 4)));
            assertOneLine(e, "lost its lease", "bob@h2");
            assertFalse(w.isBlockCommitted(1));
            assertTrue(fs().exists(lease.file()), "the other run's lease stays");
        }
    }

    // ---- blocks written in place (object stores) ----

    @Test
    void blocksWrittenInPlaceReplaceWhatAnInterruptedWriteLeftAndReadBack() throws Exception {
        org.apache.hadoop.conf.Configuration h = spark.sparkContext().hadoopConfiguration();
        h.setBoolean(StoreWriter.WRITE_IN_PLACE, true);
        try {
            String store = path("s").toString();
            StoreWriter w = StoreWriter.create(spark, store, "fp-A", false);
            assertTrue(w.writesInPlace());
            // an earlier run died while writing block 1 in place: a stray file in its (uncommitted) folder
            Path stray = new Path(path("s"), "tensors/block=1/part-stray.parquet");
            try (OutputStream out = fs().create(stray)) {
                out.write(new byte[] {1, 2, 3});
            }
            w.commitBlock(0, StoreSamples.block(0, 4, 1), StoreSamples.errors(0, 2));
            w.commitBlock(1, StoreSamples.block(1, 4, 3), StoreSamples.errors(1, 4));
            assertFalse(fs().exists(stray), "the uncommitted folder was cleared before the block was written");
            w.commit(Map.of());
            StoreReader r = StoreReader.open(spark, store);
            assertEquals(List.of(0, 1), r.blocks());
            assertEquals(StoreSamples.sorted(StoreSamples.block(1, 4, 3)), StoreSamples.sorted(r.tensors(1)));
        } finally {
            h.unset(StoreWriter.WRITE_IN_PLACE);
        }
    }

    // ---- replace ----

    /** A finished store with one block, then a --resume writer that replaces its manifest, crashing after {@code step}. */
    @ParameterizedTest(name = "crash after step {0} of replacing _manifest.json")
    @ValueSource(ints = {1, 2, 3})
    void aCrashBetweenTheStepsOfReplacingTheManifestLeavesAReadableStore(int step) throws Exception {
        String store = path("s").toString();
        StoreWriter w = StoreWriter.create(spark, store, "fp-A", false);
        w.writeJson("recipe.json", "{\"seed\": 0}");
        w.commitBlock(0, StoreSamples.block(0, 4, 1), StoreSamples.errors(0, 2));
        w.commit(Map.of("run", "first"));
        StoreWriter again = StoreWriter.create(spark, store, "fp-A", true);
        FileReplace.crashAfterStep = step;
        assertThrows(IllegalStateException.class, () -> again.commit(Map.of("run", "second")));
        FileReplace.crashAfterStep = 0;
        Path manifest = new Path(path("s"), StoreLayout.MANIFEST);
        if (step == 2) {
            assertFalse(fs().exists(manifest), "between the two renames the manifest's own name is gone");
        }
        // readable: the old manifest (steps 1), or the whole new one (steps 2, 3)
        StoreReader r = StoreReader.open(spark, store);
        assertEquals(step == 1 ? "first" : "second", r.manifest().get("run"));
        assertEquals(List.of(0), r.blocks());
        assertEquals(StoreSamples.sorted(StoreSamples.block(0, 4, 1)), StoreSamples.sorted(r.tensors(0)));
        // the next writer (--resume) repairs: one manifest, no .next/.prev beside it
        StoreWriter.create(spark, store, "fp-A", true);
        assertTrue(fs().exists(manifest));
        assertFalse(fs().exists(FileReplace.sibling(manifest, FileReplace.NEXT)));
        assertFalse(fs().exists(FileReplace.sibling(manifest, FileReplace.PREV)));
        assertEquals(step == 1 ? "first" : "second", StoreReader.open(spark, store).manifest().get("run"));
    }

    @ParameterizedTest(name = "crash after step {0} of replacing recipe.json")
    @ValueSource(ints = {1, 2, 3})
    void aCrashWhileReplacingTheRecipeNeverLosesIt(int step) throws Exception {
        String store = path("s").toString();
        StoreWriter w = StoreWriter.create(spark, store, "fp-A", false);
        w.writeJson("recipe.json", "{\"seed\": 0}");
        FileReplace.crashAfterStep = step;
        assertThrows(IllegalStateException.class, () -> w.writeJson("recipe.json", "{\"seed\": 1}"));
        FileReplace.crashAfterStep = 0;
        Path recipe = new Path(path("s"), "recipe.json");
        Path readable = FileReplace.readable(fs(), recipe);
        assertNotNull(readable, "a recipe is always there for --resume to compare");
        String text;
        try (var in = fs().open(readable)) {
            text = new String(in.readAllBytes());
        }
        assertEquals(step == 1 ? "{\"seed\": 0}" : "{\"seed\": 1}", text);
        StoreWriter.create(spark, store, "fp-A", true); // repairs
        assertEquals(recipe, FileReplace.readable(fs(), recipe));
    }

    @Test
    void aManifestWithOnlyItsOldVersionLeftIsRefusedInOneLine() throws Exception {
        String store = path("s").toString();
        StoreWriter w = StoreWriter.create(spark, store, "fp-A", false);
        w.commitBlock(0, StoreSamples.block(0, 4, 1), StoreSamples.errors(0, 2));
        w.commit(Map.of());
        Path manifest = new Path(path("s"), StoreLayout.MANIFEST);
        assertTrue(fs().rename(manifest, FileReplace.sibling(manifest, FileReplace.PREV))); // hand-made damage
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> StoreReader.open(spark, store));
        assertOneLine(e, "_manifest.json is missing and only its old version _manifest.json.prev remains");
    }

    @Test
    void aHalfWrittenFirstManifestIsNotRead() throws Exception {
        String store = path("s").toString();
        StoreWriter w = StoreWriter.create(spark, store, "fp-A", false);
        w.commitBlock(0, StoreSamples.block(0, 4, 1), StoreSamples.errors(0, 2));
        FileReplace.crashAfterStep = 1;
        assertThrows(IllegalStateException.class, () -> w.commit(Map.of()));
        FileReplace.crashAfterStep = 0;
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> StoreReader.open(spark, store));
        assertOneLine(e, "is not a finished model store");
    }
}
