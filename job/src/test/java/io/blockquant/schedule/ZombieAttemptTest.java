package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.*;

import io.blockquant.spark.HadoopConf;
import io.blockquant.spark.SparkSessions;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Fault injection: the first attempt of partition 1's task leaves a writer behind (as an attempt on an executor
 * that Spark declared lost keeps running), then fails; Spark runs a second attempt, which succeeds, and the
 * driver marks the block complete. The zombie then writes its (different) activations late: nothing the driver
 * committed changes, and readers still get the accepted attempt's values.
 */
class ZombieAttemptTest {

    static SparkSession spark;

    @BeforeAll
    static void start() {
        spark = SparkSessions.getOrCreate("zombie-attempt-test", "local[2,3]"); // 3 attempts per task
    }

    @AfterAll
    static void stop() {
        spark.stop();
    }

    static float[] values(int partition, float of) {
        float[] v = new float[6];
        Arrays.fill(v, partition * 10 + of);
        return v;
    }

    @Test
    void aSupersededAttemptWritingLateChangesNothingCommitted(@TempDir Path tmp) throws Exception {
        ActivationFiles acts = new ActivationFiles(tmp.resolve("work").toUri().toString());
        HadoopConf conf = new HadoopConf(spark.sparkContext().hadoopConfiguration());
        String go = tmp.resolve("zombie-go").toString(), done = tmp.resolve("zombie-done").toString();
        JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        sc.parallelize(List.of(0, 1, 2), 3).foreach(p -> {
            TaskContext tc = TaskContext.get();
            if (p == 1 && tc.attemptNumber() == 0) {
                String zombie = ActivationFiles.attemptName(); // this attempt's own name, taken into the thread
                Thread late = new Thread(() -> {
                    try {
                        while (!Files.exists(Path.of(go))) Thread.sleep(20);
                        acts.write(conf.get(), 3, 1, values(1, 9), 2, 3, zombie); // stale values, after the commit
                        Files.writeString(Path.of(done), zombie);
                    } catch (Exception e) {
                        try {
                            Files.writeString(Path.of(done), "failed: " + e);
                        } catch (java.io.IOException ignored) {
                            // the test times out on the missing file instead
                        }
                    }
                });
                late.setDaemon(true);
                late.start();
                throw new IllegalStateException("fault injected: attempt 0 of partition 1 lost");
            }
            acts.write(conf.get(), 3, p, values(p, 1), 2, 3);
        });
        acts.markComplete(spark.sparkContext().hadoopConfiguration(), 3);
        Path blockDir = tmp.resolve("work/acts/block-0003");
        List<String> committed = listing(blockDir);
        byte[] accepted1 = Files.readAllBytes(blockDir.resolve(
                new org.apache.hadoop.fs.Path(acts.resolve(conf.get(), 3, 1).toUri()).getName()));

        Files.writeString(Path.of(go), "go");
        long deadline = System.currentTimeMillis() + 20_000;
        while (!Files.exists(Path.of(done)) && System.currentTimeMillis() < deadline) Thread.sleep(20);
        String zombie = Files.readString(Path.of(done));
        assertTrue(zombie.startsWith("a"), "the zombie wrote its file: " + zombie);
        assertTrue(Files.exists(blockDir.resolve("part-00001." + zombie + ".f32")), "the late file exists, beside the others");

        // what the driver committed is as it was, and every reader gets the accepted values
        for (String name : committed) {
            if (!name.startsWith(".")) assertTrue(Files.exists(blockDir.resolve(name)), name + " still there");
        }
        assertArrayEquals(accepted1, Files.readAllBytes(blockDir.resolve(
                new org.apache.hadoop.fs.Path(acts.resolve(conf.get(), 3, 1).toUri()).getName())));
        for (int p = 0; p < 3; p++) {
            int[] shape = new int[2];
            assertArrayEquals(values(p, 1), acts.read(conf.get(), 3, p, shape), "partition " + p);
            assertArrayEquals(new int[] {2, 3}, shape);
        }
        assertNotEquals("part-00001." + zombie + ".f32", acts.resolve(conf.get(), 3, 1).getName());
    }

    static List<String> listing(Path dir) throws Exception {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }
}
