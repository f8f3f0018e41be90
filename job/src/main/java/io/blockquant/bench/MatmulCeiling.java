package io.blockquant.bench;

import io.blockquant.tensor.ForwardOps;
import io.blockquant.tensor.Tensor;
import java.util.List;
import java.util.Locale;

/**
 * The machine's own limit: float32 products {@code x·Wᵀ} through the backend, as a linear layer computes them,
 * at tiny-llama's, Llama-7B's and square shapes. The best 7B-shaped rate is the ceiling every later fraction
 * is taken of.
 */
public final class MatmulCeiling {

    private static final String SECTION = "1. sgemm ceiling (float32, x·Wᵀ through the backend, as a linear layer)";
    /** The JSON field of the ceiling, in GFLOP/s. */
    static final String FIELD = "sgemm_gflops";

    /** One product {@code x [m, k] · Wᵀ (W [n, k])}. */
    private record Shape(String group, String label, int m, int k, int n) {
        double flop() {
            return 2.0 * m * k * n;
        }
    }

    private final ForwardOps be;
    private final BenchSettings settings;
    private final BenchReport report;

    public MatmulCeiling(ForwardOps be, BenchSettings settings, BenchReport report) {
        this.be = be;
        this.settings = settings;
        this.report = report;
    }

    public void run() {
        String s = SECTION;
        int threads = settings.threads(), shrink = settings.shrink();
        boolean quick = settings.quick();
        CpuBlas.useThreads(threads);
        int tinyTokens = quick ? 512 : 4096;
        int tokens7b = 2048 / shrink, hidden = 4096 / shrink, ff = 11008 / shrink;
        String tag = quick ? "7B/8" : "7B";
        List<Shape> shapes = List.of(
                new Shape("tiny", "tiny q/o   " + tinyTokens + "×256 · 256×256", tinyTokens, 256, 256),
                new Shape("tiny", "tiny k/v   " + tinyTokens + "×256 · 256×128", tinyTokens, 256, 128),
                new Shape("tiny", "tiny gate/up " + tinyTokens + "×256 · 256×704", tinyTokens, 256, 704),
                new Shape("tiny", "tiny down  " + tinyTokens + "×704 · 704×256", tinyTokens, 704, 256),
                new Shape("7b", tag + " q/k/v/o " + tokens7b + "×" + hidden + " · " + hidden + "×" + hidden, tokens7b, hidden, hidden),
                new Shape("7b", tag + " gate/up " + tokens7b + "×" + hidden + " · " + hidden + "×" + ff, tokens7b, hidden, ff),
                new Shape("7b", tag + " down " + tokens7b + "×" + ff + " · " + ff + "×" + hidden, tokens7b, ff, hidden),
                new Shape("square", "square " + 1024 / shrink + "²", 1024 / shrink, 1024 / shrink, 1024 / shrink),
                new Shape("square", "square " + 2048 / shrink + "²", 2048 / shrink, 2048 / shrink, 2048 / shrink));
        double best7b = 0;
        for (Shape sh : shapes) {
            double g = gflops(sh);
            if (sh.group().equals("7b")) best7b = Math.max(best7b, g);
            report.row(s, sh.label(), String.format(Locale.ROOT, "%.1f GFLOP/s", g), "");
        }
        report.put(FIELD, best7b);
        report.row(s, "ceiling = max at " + tag + " shapes", String.format(Locale.ROOT, "%.1f GFLOP/s", best7b),
                threads + " BLAS thread(s); the figure every fraction below is taken of");
        if (!quick && threads != 1) {
            CpuBlas.useThreads(1);
            Shape one = shapes.get(4);
            double g1 = gflops(one);
            CpuBlas.useThreads(threads);
            report.row(s, "one thread, " + one.label(), String.format(Locale.ROOT, "%.1f GFLOP/s", g1),
                    "what one Spark task gets (OMP_NUM_THREADS=1)");
            report.put("sgemm_gflops_1thread", g1);
        }
        report.put("sgemm_threads", threads);
    }

    /**
     * The ceiling {@link #run} found or, when it did not run, the 7B q/k/v/o product alone, warmed up further
     * (the first products of a process are slow); noted under the block-forward section, which asks for it.
     */
    public double ceiling() {
        if (report.get(FIELD) instanceof Number n) return n.doubleValue();
        int shrink = settings.shrink();
        Shape sq = new Shape("7b", "", 2048 / shrink, 4096 / shrink, 4096 / shrink);
        for (int i = 0; i < 3; i++) gflops(sq);
        double g = gflops(sq);
        report.note("2. block forward", String.format(Locale.ROOT, "ceiling measured here (section 1 not run): %.1f GFLOP/s at %d×%d · %d×%d",
                g, sq.m(), sq.k(), sq.k(), sq.n()));
        report.put(FIELD, g);
        return g;
    }

    private double gflops(Shape sh) {
        Tensor x = RandomBlocks.activations(be, 1, sh.m(), sh.k());
        Tensor w = RandomBlocks.activations(be, 2, sh.n(), sh.k());
        Timing t = Timing.measure(settings.warmups(), settings.repeats(), () -> be.scratchValue(() -> be.matmul(x, w, false, true).shape()));
        x.close();
        w.close();
        return t.gflops(sh.flop());
    }
}
