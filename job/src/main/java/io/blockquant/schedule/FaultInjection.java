package io.blockquant.schedule;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkEnv;

/**
 * Test hooks that make the quantize job fail the ways a cluster does. Never set in production.
 * <ul>
 *   <li>{@code -Dblockquant.fault.beforeCommit=N} (driver): the job dies just before it commits block N, as a
 *       killed driver would, so tests can show what such a store looks like and that {@code --resume}
 *       finishes it.</li>
 *   <li>{@code spark.blockquant.fault.haltExecutorInBlock=N} with {@code spark.blockquant.fault.haltMarker=FILE}
 *       (Spark conf, read on the executor): the first task of block N to create FILE halts its executor JVM,
 *       as a killed executor process would; FILE holds that JVM's pid. Only one executor dies (the marker is
 *       created once) and never the driver's JVM (local mode).</li>
 * </ul>
 */
final class FaultInjection {

    static final String HALT_BLOCK = "spark.blockquant.fault.haltExecutorInBlock";
    static final String HALT_MARKER = "spark.blockquant.fault.haltMarker";

    private FaultInjection() {}

    static void beforeCommit(int block) {
        String v = System.getProperty("blockquant.fault.beforeCommit");
        if (v != null && Integer.parseInt(v) == block) {
            throw new IllegalStateException("fault injected before committing block " + block + " (blockquant.fault.beforeCommit)");
        }
    }

    static void inBlockTask(int block) {
        SparkEnv env = SparkEnv.get();
        if (env == null || "driver".equals(env.executorId())) return;
        SparkConf conf = env.conf();
        String v = conf.get(HALT_BLOCK, null);
        if (v == null || Integer.parseInt(v) != block) return;
        String marker = conf.get(HALT_MARKER, null);
        if (marker == null) throw new IllegalStateException(HALT_BLOCK + " needs " + HALT_MARKER + " (a file path)");
        Path p = Paths.get(marker);
        try {
            Files.writeString(p, Long.toString(ProcessHandle.current().pid()), StandardCharsets.US_ASCII,
                    StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
        } catch (FileAlreadyExistsException done) {
            return; // an executor was killed already
        } catch (IOException e) {
            throw new UncheckedIOException(p + ": cannot create the fault marker (" + e.getMessage() + ")", e);
        }
        System.err.println("blockquant: fault injected: halting executor " + env.executorId() + " in block " + block);
        Runtime.getRuntime().halt(137);
    }
}
