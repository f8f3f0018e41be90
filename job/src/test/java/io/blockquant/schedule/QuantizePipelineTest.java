package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.Fixtures;
import io.blockquant.cli.Main;
import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.ModelFormatException;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.spark.SparkSessions;
import io.blockquant.store.LayerError;
import io.blockquant.store.StoreReader;
import io.blockquant.store.StoredModel;
import io.blockquant.store.TensorRecord;
import io.blockquant.store.StoreLayout;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.stream.Stream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole quantize pipeline through Spark ({@code local[2]}, 4 calibration tasks per pass) on tiny-llama
 * with a small calibration set, read back from the store.
 */
class QuantizePipelineTest {

    static SparkSession spark;

    @BeforeAll
    static void startSpark() {
        spark = SparkSessions.getOrCreate("quantize-pipeline-test", "local[2]");
    }

    @AfterAll
    static void stopSpark() {
        spark.stop();
    }

    static String[] quantize(Path out, String method, String... more) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", Fixtures.model("tiny-llama").toString(),
                "--method", method, "--wbits", "3", "--group", "64", "--nsamples", "8", "--seqlen", "64",
                "--windows-per-task", "2", "--no-eval", "--out", out.toString(), "--master", "local[2]"));
        args.addAll(List.of(more));
        return args.toArray(new String[0]);
    }

    static String run(String... args) {
        PrintStream old = System.out;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        System.setOut(new PrintStream(buf, true));
        try {
            int code = Main.execute(args);
            assertEquals(0, code, "exit code of " + String.join(" ", args) + "\n" + buf);
        } finally {
            System.setOut(old);
        }
        return buf.toString();
    }

    static Map<Integer, Double> blockErrors(StoreReader store) {
        Map<Integer, Double> out = new HashMap<>();
        for (LayerError e : store.layerErrors()) {
            if (e.module().equals(QuantizeJob.BLOCK_OUTPUT)) out.put(e.block(), e.relativeOutputError());
        }
        return out;
    }

    /** Every file of blocks 0..n-1 (tensors, layer errors, commit markers) with its modification time and bytes. */
    static Map<Path, String> committedFiles(Path store, int n) {
        Map<Path, String> out = new java.util.TreeMap<>();
        for (String table : List.of(StoreLayout.TENSORS, StoreLayout.LAYER_ERRORS, StoreLayout.COMMITTED)) {
            for (int b = 0; b < n; b++) {
                Path p = store.resolve(table).resolve("block=" + b);
                assertTrue(Files.exists(p), p + " missing");
                try (Stream<Path> files = Files.walk(p)) {
                    for (Path f : files.filter(Files::isRegularFile).toList()) {
                        out.put(store.relativize(f), Files.getLastModifiedTime(f).toMillis() + " ms, bytes hash "
                                + Arrays.hashCode(Files.readAllBytes(f)));
                    }
                } catch (IOException ex) {
                    throw new UncheckedIOException(ex);
                }
            }
        }
        return out;
    }

    /**
     * Runs {@code args} twice at the same moment (two threads, one Spark application, like two schedulers'
     * drivers sharing a cluster); both end with exit code 2 here (one refused, one killed by fault injection).
     * Returns the error lines of both.
     */
    static String twoRunsAtOnce(String[] args) throws Exception {
        java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(2);
        PrintStream err = System.err;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        System.setErr(new PrintStream(buf, true));
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(2);
        try {
            List<java.util.concurrent.Future<Integer>> codes = new ArrayList<>();
            for (int i = 0; i < 2; i++) {
                codes.add(pool.submit(() -> {
                    start.await();
                    return Main.execute(args);
                }));
            }
            for (var c : codes) assertEquals(2, c.get(), "exit code:\n" + buf);
        } finally {
            pool.shutdownNow();
            System.setErr(err);
        }
        return buf.toString().lines().filter(l -> l.contains("error:")).reduce("", (a, b) -> a + b + "\n");
    }

    @Test
    void gptqStoreReadsBackAndBeatsRtnOnEveryBlock(@TempDir Path tmp) {
        run(quantize(tmp.resolve("gptq"), "gptq"));
        run(quantize(tmp.resolve("rtn"), "rtn"));
        StoreReader gptq = StoreReader.open(spark, tmp.resolve("gptq").toString());
        StoreReader rtn = StoreReader.open(spark, tmp.resolve("rtn").toString());
        assertEquals(List.of(0, 1, 2, 3, 4, 5, 6, 7), gptq.blocks());

        // every linear is stored packed at 3 bits with groups of 64, norms as float32
        List<TensorRecord> block0 = gptq.tensors(0);
        long qweights = block0.stream().filter(t -> t.kind().equals(TensorRecord.QWEIGHT)).count();
        assertEquals(7, qweights);
        for (TensorRecord t : block0) {
            if (t.kind().equals(TensorRecord.QWEIGHT)) {
                assertEquals(3, t.bits(), t.describe());
                assertEquals(64, t.groupSize(), t.describe());
            }
        }
        // stored weights sit on the 3-bit grid of their group: at most 8 distinct values per (row, group)
        InMemoryWeights w = StoredModel.read(gptq, ModelSpecReader.read(gptq.modelDir(), new Configuration()));
        float[] q = w.readFloats("model.layers.0.self_attn.q_proj.weight");
        for (int r = 0; r < 256; r += 37) {
            for (int g = 0; g < 4; g++) {
                java.util.Set<Float> distinct = new java.util.HashSet<>();
                for (int c = g * 64; c < (g + 1) * 64; c++) distinct.add(q[r * 256 + c]);
                assertTrue(distinct.size() <= 8, "row " + r + " group " + g + ": " + distinct.size() + " values");
            }
        }

        Map<Integer, Double> eg = blockErrors(gptq), er = blockErrors(rtn);
        for (int b = 0; b < 8; b++) {
            assertTrue(eg.get(b) < er.get(b), "block " + b + ": GPTQ output error " + eg.get(b) + " vs RTN " + er.get(b));
        }
        // GPTQ's own objective is recorded for every linear
        for (LayerError e : gptq.layerErrors()) {
            if (!e.module().equals(QuantizeJob.BLOCK_OUTPUT)) assertTrue(e.gptqLoss() > 0, e.toString());
        }
    }

    @Test
    void aJobKilledBeforeItsManifestLeavesNoReadableModelAndResumeFinishesIt(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("store");
        // two runs started at once on one --out (an Airflow retry racing a slow first try): one is refused by the
        // other's lease, in one line naming its owner; the other runs until the injected kill before block 3
        System.setProperty("blockquant.fault.beforeCommit", "3");
        String race;
        try {
            race = twoRunsAtOnce(quantize(out, "rtn"));
        } finally {
            System.clearProperty("blockquant.fault.beforeCommit");
        }
        assertEquals(1, race.lines().filter(l -> l.contains("is being written by " + System.getProperty("user.name") + "@")
                && l.contains("a second writer is refused")).count(), race);
        assertEquals(1, race.lines().filter(l -> l.contains("fault injected before committing block 3")).count(), race);
        assertEquals(2, race.lines().count(), "one error line per run:\n" + race);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> StoreReader.open(spark, out.toString()));
        assertTrue(e.getMessage().contains("not a finished model store"), e.getMessage());
        Map<Path, String> committed = committedFiles(out, 3);

        String summary = run(quantize(out, "rtn", "--resume"));
        assertEquals(3, summary.lines().filter(l -> l.contains("committed earlier (--resume)")).count(), summary);
        // no task of a committed block ran again, and their files were neither rewritten nor touched
        assertEquals(java.util.Set.of(3, 4, 5, 6, 7), PlacementLines.blocksRun(PlacementLines.parse(summary)), summary);
        assertEquals(committed, committedFiles(out, 3));
        StoreReader resumed = StoreReader.open(spark, out.toString());
        assertEquals(8, resumed.blocks().size());

        // the same recipe run alone in one go stores the same tensors, bit for bit (RTN needs no data; the
        // activations only feed the error metrics): the refused run changed nothing of the winner's store
        run(quantize(tmp.resolve("whole"), "rtn"));
        StoreReader whole = StoreReader.open(spark, tmp.resolve("whole").toString());
        for (int b = -1; b < 8; b++) {
            List<TensorRecord> x = b < 0 ? resumed.modelTensors() : resumed.tensors(b);
            List<TensorRecord> y = b < 0 ? whole.modelTensors() : whole.tensors(b);
            assertEquals(y, x, "block " + b);
        }
        assertEquals(blockErrors(whole).keySet(), blockErrors(resumed).keySet());
        // a finished store refuses a second run without --resume, naming the store
        PrintStream err = System.err;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        System.setErr(new PrintStream(buf, true));
        try {
            assertEquals(2, Main.execute(quantize(out, "rtn")));
        } finally {
            System.setErr(err);
        }
        assertTrue(buf.toString().contains("already holds a finished model store"), buf.toString());
        assertFalse(buf.toString().contains("\tat "), "a clear error, not a stack trace:\n" + buf);
    }
}
