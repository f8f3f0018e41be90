package io.blockquant.tensor;

import io.blockquant.cuda.CudaBackend;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Locale;

/**
 * The one place a backend is chosen. Spark work follows {@link Choice}: the {@code --backend} flag, the
 * recipe's {@code backend} key or {@code spark.blockquant.backend} ({@code -Dblockquant.backend} is read
 * when none of them is given), {@code auto} by default: CUDA on the GPU Spark assigned to a task, or, where
 * no GPU is assigned but the caller may probe (local mode, the driver), CUDA when the library loads and a
 * device exists; the CPU backend (ND4J) otherwise. The GPU check ({@code io.blockquant.gpu.GpuCheck}) follows
 * {@code -Dgpu.backend} and {@code -Dgpu.device}.
 *
 * <p>The GPU payload carries no ND4J: {@link Nd4jBackend} is named only on the paths that chose the CPU,
 * so its class (and ND4J's natives) are never loaded when CUDA computes.
 */
public final class Backends {

    private Backends() {}

    /** The JVM property read when neither a flag, a recipe key nor the Spark key chose a backend. */
    public static final String PROPERTY = "blockquant.backend";

    /** The Spark configuration key the CLI sets from {@code --backend}; executors read it from their conf. */
    public static final String SPARK_KEY = "spark.blockquant.backend";

    /** The GPU check's choice: {@code cpu} runs it on the CPU backend, anything else (or nothing) on CUDA. */
    public static final String CHECK_PROPERTY = "gpu.backend";

    /** The GPU check's CUDA device ordinal (default 0). */
    public static final String CHECK_DEVICE_PROPERTY = "gpu.device";

    /** What the user asked for. */
    public enum Choice {
        CPU, CUDA, AUTO;

        /** {@code cpu}, {@code cuda} or {@code auto} (any case); {@code where} names the flag or key for the error. */
        public static Choice parse(String value, String where) {
            String v = value == null ? "" : value.trim().toLowerCase(Locale.ROOT);
            return switch (v) {
                case "cpu" -> CPU;
                case "cuda", "gpu" -> CUDA;
                case "auto", "" -> AUTO;
                default -> throw new IllegalArgumentException(where + " '" + value + "': expected cpu, cuda or auto");
            };
        }

        /** The JVM property's choice ({@code -Dblockquant.backend}), {@code auto} when unset. */
        public static Choice fromProperty() {
            return parse(System.getProperty(PROPERTY, "auto"), "-D" + PROPERTY);
        }
    }

    /** The CUDA backend was asked for (or a GPU was assigned) but cannot run here: one line, host, GPU, cause. */
    public static final class UnavailableException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public UnavailableException(String message) {
            super(message, null, false, false);
        }
    }

    /**
     * The backend for work on {@code gpuAddress} (the Spark-assigned GPU's address, a CUDA ordinal; null when
     * none is assigned). {@code mayProbe}: without an assigned GPU, {@code auto} may still take device 0 when
     * CUDA loads (local mode and the driver; not a cluster executor that Spark gave no GPU).
     */
    public static TensorBackend choose(Choice choice, String gpuAddress, boolean mayProbe) {
        switch (choice) {
            case CPU:
                return cpu();
            case CUDA:
                return cuda(gpuAddress);
            case AUTO:
            default:
                if (gpuAddress != null) return cuda(gpuAddress); // Spark gave this task a GPU: it computes there
                if (mayProbe && CudaBackend.isAvailable()) return cuda(null);
                return cpu();
        }
    }

    /** Whether {@link #choose} picks the CUDA backend (without building it). */
    public static boolean choosesCuda(Choice choice, String gpuAddress, boolean mayProbe) {
        return choice == Choice.CUDA || (choice == Choice.AUTO && (gpuAddress != null || (mayProbe && CudaBackend.isAvailable())));
    }

    private static TensorBackend cuda(String gpuAddress) {
        String gpu = gpuAddress == null ? "0" : gpuAddress.trim();
        int device;
        try {
            device = Integer.parseInt(gpu);
        } catch (NumberFormatException e) {
            throw new UnavailableException("CUDA backend on host " + host() + ": GPU address '" + gpu
                    + "' is not a CUDA device ordinal (discovery script output?)");
        }
        String why = CudaBackend.unavailableReason();
        if (why == null) {
            try {
                return CudaBackend.forDevice(device);
            } catch (RuntimeException | LinkageError e) {
                why = oneLine(e);
            }
        }
        throw new UnavailableException("CUDA backend unavailable on host " + host() + ", GPU " + gpu + ": " + why
                + " (build libblockquant_cuda.so with cluster/gpu/build-native.sh, or run with --backend cpu)");
    }

    static String host() {
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (UnknownHostException e) {
            return System.getenv().getOrDefault("HOSTNAME", "unknown");
        }
    }

    /**
     * The CPU backend (ND4J): benchmarks of the CPU, and the reference the CUDA backend is checked against.
     * Spark work goes through {@link #choose}.
     */
    public static TensorBackend cpu() {
        try {
            return Nd4jBackend.loaded();
        } catch (LinkageError | RuntimeException e) {
            // e.g. a runtime packed for GPUs, which carries no ND4J
            throw new UnavailableException("CPU backend (ND4J) unavailable on host " + host() + ": " + oneLine(e)
                    + " (use --backend cuda, or put ND4J's jars on the classpath)");
        }
    }

    private static String oneLine(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) root = root.getCause();
        return (root.getClass().getSimpleName() + ": " + root.getMessage()).replaceAll("\\s*\\R\\s*", " ");
    }

    /**
     * The backend of the GPU check (one JVM on a GPU machine, no Spark): CUDA device {@code -Dgpu.device}
     * (default 0), or the CPU backend with {@code -Dgpu.backend=cpu}.
     */
    public static TensorBackend forGpuCheck() {
        if ("cpu".equals(System.getProperty(CHECK_PROPERTY))) return cpu();
        return CudaBackend.forDevice(Integer.getInteger(CHECK_DEVICE_PROPERTY, 0));
    }
}
