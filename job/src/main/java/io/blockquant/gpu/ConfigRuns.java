package io.blockquant.gpu;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * How the GPU runners ({@link OmniQuantRun}, {@link GptqRun}) run their configurations: each in a thread of its
 * own, {@code threads} at a time, with its log at {@code LOG_DIR/<config with ':' as '-'>.log}; the CUDA
 * backend gives every thread its own stream, so the small kernels of several runs overlap on one GPU.
 */
final class ConfigRuns {

    private ConfigRuns() {}

    /** One configuration's work; {@code name} is the configuration with {@code ':'} as {@code '-'}. */
    interface Work {
        void run(String config, String name, PrintStream log) throws Exception;
    }

    /** Runs every configuration and returns the failures ("name: error"); each failure's trace is in its log. */
    static List<String> runAll(Path logDir, List<String> configs, int threads, Work work) throws InterruptedException {
        List<String> failed = Collections.synchronizedList(new ArrayList<>());
        ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, threads));
        for (String config : configs) {
            String name = config.replace(':', '-');
            pool.submit(() -> {
                try (PrintStream log = new PrintStream(Files.newOutputStream(logDir.resolve(name + ".log")), true, "UTF-8")) {
                    try {
                        work.run(config, name, log);
                    } catch (Exception | Error e) {
                        e.printStackTrace(log);
                        failed.add(name + ": " + e);
                    }
                } catch (IOException e) {
                    failed.add(name + ": " + e);
                }
            });
        }
        pool.shutdown();
        pool.awaitTermination(Long.MAX_VALUE, TimeUnit.DAYS);
        failed.forEach(f -> System.err.println("FAILED " + f));
        return failed;
    }
}
