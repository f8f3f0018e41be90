package io.blockquant.bench;

import org.nd4j.linalg.factory.Nd4j;

/**
 * The CPU backend's BLAS, where a benchmark sets how many threads a product may use: the job's tasks run
 * with one each (the launcher's {@code OMP_NUM_THREADS}), a machine's ceiling is measured with all cores.
 */
public final class CpuBlas {

    private CpuBlas() {}

    public static int threads() {
        return Nd4j.factory().blas().getMaxThreads();
    }

    public static void useThreads(int n) {
        Nd4j.factory().blas().setMaxThreads(n);
    }

    /** The ND4J backend and the BLAS library under it, e.g. {@code CpuBackend, OPENBLAS}. */
    public static String describe() {
        return Nd4j.getBackend().getClass().getSimpleName() + ", " + Nd4j.factory().blas().getBlasVendor();
    }
}
