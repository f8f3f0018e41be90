package io.blockquant.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What the figures were measured on: cores, memory, BLAS threads, Java and ND4J, and the load average (a
 * shared machine: others' work slows every figure). Reads Linux's {@code /proc}; "n/a" where it cannot.
 */
public final class MachineFacts {

    private MachineFacts() {}

    private static final String SECTION = "machine";

    /** The machine section; {@code launcherBlasThreads}: the BLAS threads the launcher gave before any section set them. */
    public static void report(BenchReport report, BenchSettings settings, int launcherBlasThreads) {
        String s = SECTION;
        int cores = Runtime.getRuntime().availableProcessors();
        long memTotal = meminfo("MemTotal:");
        report.row(s, "cores (JVM)", String.valueOf(cores), cpuModel());
        report.row(s, "memory", BenchReport.gigabytes(memTotal), "max heap " + BenchReport.gigabytes(Runtime.getRuntime().maxMemory()));
        report.row(s, "BLAS threads", String.valueOf(settings.threads()), "launcher's OMP_NUM_THREADS gave " + launcherBlasThreads
                + " (one per Spark task); e2e keeps that");
        report.row(s, "load average at start", loadAverage(), "a shared machine: others' work slows every figure");
        report.row(s, "Java / ND4J", System.getProperty("java.version"), CpuBlas.describe());
        if (settings.quick()) report.note(s, "--quick: 7B shapes divided by 8, few tokens, one run each; a smoke run, the figures are not measurements");
        report.put("quick", settings.quick());
        report.put("cores", cores);
        report.put("memory_gb", memTotal / 1e9);
        report.put("blas_threads", settings.threads());
        report.put("load_average_start", loadAverage());
    }

    /** The 1, 5 and 15 minute load averages. */
    public static String loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (IOException | RuntimeException e) {
            return "n/a";
        }
    }

    private static long meminfo(String key) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith(key)) return Long.parseLong(line.substring(key.length()).trim().split("\\s+")[0]) * 1024;
            }
        } catch (IOException | RuntimeException e) {
            return -1;
        }
        return -1;
    }

    private static String cpuModel() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("model name")) return line.substring(line.indexOf(':') + 1).trim();
            }
        } catch (IOException | RuntimeException e) {
            return "";
        }
        return "";
    }
}
