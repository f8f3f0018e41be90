package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.Fixtures;
import io.blockquant.cli.Main;
import io.blockquant.spark.SparkSessions;
import io.blockquant.spark.StandaloneCluster;
import io.blockquant.store.LayerError;
import io.blockquant.store.StoreReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * The quantize job on a real Spark standalone cluster ({@link StandaloneCluster}): a master and two workers on
 * 127.0.0.1, each worker offering one fake GPU, executors in JVMs of their own, Kryo with registration
 * required. RTN W4 g64 of tiny-llama on 4 windows of 64 tokens (2 per task), compared with the same recipe
 * run on {@code local[2]} in this JVM. ({@code --resume} is driver-side and tested in {@link QuantizePipelineTest}.)
 */
class ClusterQuantizeTest {

    @RegisterExtension
    static final StandaloneCluster CLUSTER = new StandaloneCluster(2, Fixtures.ROOT.getParent());

    @TempDir
    static Path tmp;

    /** The same recipe on local[2] in this JVM: what every cluster store must equal. */
    static Path reference;

    static String[] quantize(Path out, String master, String... more) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", Fixtures.model("tiny-llama").toString(),
                "--method", "rtn", "--wbits", "4", "--group", "64", "--nsamples", "4", "--seqlen", "64",
                "--windows-per-task", "2", "--calib", Fixtures.corpus("kjv.valid.txt").toString(), // small: quick to tokenize
                "--no-eval", "--out", out.toString(), "--master", master));
        args.addAll(List.of(more));
        return args.toArray(new String[0]);
    }

    record Run(int exit, String out, String err) {}

    /** Runs the command line with extra Spark settings (read by the driver's SparkConf from system properties). */
    static Run run(Map<String, String> sparkConf, String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        sparkConf.forEach(System::setProperty);
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        try {
            int exit = Main.execute(args);
            return new Run(exit, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
            sparkConf.keySet().forEach(System::clearProperty);
            stopSpark(); // the next run builds its session from its own settings
        }
    }

    static Run runOnCluster(Map<String, String> more, String... args) {
        Map<String, String> conf = new LinkedHashMap<>(CLUSTER.driverConf());
        conf.putAll(more);
        Run r = run(conf, args);
        System.out.println(r.out());
        return r;
    }

    static void stopSpark() {
        scala.Option<SparkSession> s = SparkSession.getDefaultSession();
        if (s.isDefined()) s.get().stop();
        s = SparkSession.getActiveSession();
        if (s.isDefined()) s.get().stop();
    }

    @BeforeAll
    static void localReference() {
        stopSpark();
        reference = tmp.resolve("local");
        Run r = run(Map.of("spark.kryo.registrationRequired", "true"), quantize(reference, "local[2]"));
        assertEquals(0, r.exit(), r.err());
        List<PlacementLines> local = PlacementLines.parse(r.out());
        assertEquals(1, local.size(), r.out());
        assertEquals("driver", local.get(0).executor(), "local[2]: every task in the driver's JVM");
        assertEquals("none", local.get(0).gpu(), "local[2]: no GPU");
    }

    @AfterAll
    static void stopReader() {
        stopSpark();
    }

    /** Asserts that {@code store} holds exactly the tensors and layer errors of the local[2] store. */
    static void assertSameAsReference(Path store) {
        SparkSession spark = SparkSessions.getOrCreate("cluster-test-reader", "local[1]");
        try {
            StoreReader x = StoreReader.open(spark, store.toString());
            StoreReader y = StoreReader.open(spark, reference.toString());
            assertEquals(y.blocks(), x.blocks());
            assertEquals(y.modelTensors(), x.modelTensors(), "model tensors");
            for (int b : y.blocks()) assertEquals(y.tensors(b), x.tensors(b), "block " + b);
            // the error metrics are float32 sums of products computed by BLAS, whose summation order follows its
            // thread count (the executors' JVMs and the test's may differ): equal to float32 rounding, not bits
            Map<String, Double> ex = errors(y.layerErrors()), ac = errors(x.layerErrors());
            assertEquals(ex.keySet(), ac.keySet());
            for (String k : ex.keySet()) {
                assertEquals(ex.get(k), ac.get(k), 1e-5 * ex.get(k), "layer error " + k);
            }
        } finally {
            spark.stop();
        }
    }

    static Map<String, Double> errors(List<LayerError> errors) {
        Map<String, Double> out = new TreeMap<>();
        for (LayerError e : errors) out.put(e.block() + "/" + e.module(), e.relativeOutputError());
        return out;
    }

    @Test
    void blockTasksRunInExecutorJvmsOnDistinctGpusAndTheStoreEqualsTheLocalOne() {
        Path store = tmp.resolve("cluster");
        Run r = runOnCluster(Map.of(), quantize(store, CLUSTER.masterUrl()));
        assertEquals(0, r.exit(), r.err() + CLUSTER.logTail(30));
        assertTrue(r.err().contains("block tasks ask for one GPU each"), r.err());

        List<PlacementLines> executors = PlacementLines.parse(r.out());
        assertEquals(CLUSTER.workers(), executors.size(), "one executor per worker ran block tasks:\n" + r.out());
        Set<Long> pids = new TreeSet<>();
        Set<String> gpus = new TreeSet<>();
        Set<Integer> blocks = new TreeSet<>();
        for (PlacementLines e : executors) {
            assertNotEquals(ProcessHandle.current().pid(), e.pid(), "a block task ran in the driver's JVM: " + e);
            assertNotEquals("driver", e.executor());
            pids.add(e.pid());
            gpus.add(e.gpu());
            blocks.addAll(e.blocks());
        }
        assertEquals(CLUSTER.workers(), pids.size(), "executors in JVMs of their own: " + executors);
        assertEquals(Set.of("0", "1"), gpus, "each executor's tasks saw its worker's GPU: " + executors);
        assertEquals(Set.of(-1, 0, 1, 2, 3, 4, 5, 6, 7), blocks, "every block's tasks ran on the cluster");

        assertSameAsReference(store);
    }

    @Test
    void anExecutorKilledDuringABlockIsReplacedAndTheJobFinishes() throws IOException {
        Path store = tmp.resolve("killed");
        Path marker = tmp.resolve("halted-executor.pid");
        Run r = runOnCluster(Map.of(FaultInjection.HALT_BLOCK, "2", FaultInjection.HALT_MARKER, marker.toString()),
                quantize(store, CLUSTER.masterUrl()));
        assertEquals(0, r.exit(), r.err() + CLUSTER.logTail(30));
        assertTrue(Files.exists(marker), "no executor was halted:\n" + r.out());
        long killed = Long.parseLong(Files.readString(marker).trim());
        assertFalse(ProcessHandle.of(killed).map(ProcessHandle::isAlive).orElse(false), "executor " + killed + " still runs");
        List<PlacementLines> executors = PlacementLines.parse(r.out());
        for (PlacementLines e : executors) {
            if (e.pid() == killed) assertTrue(e.blocks().stream().allMatch(b -> b < 2), "the killed executor finished no task of block 2 or later: " + e);
        }
        assertEquals(Set.of(-1, 0, 1, 2, 3, 4, 5, 6, 7), PlacementLines.blocksRun(executors));
        assertSameAsReference(store);
    }
}
