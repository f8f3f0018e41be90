package io.blockquant.bench;

import io.blockquant.algo.GptqSettings;
import io.blockquant.algo.LorcSettings;
import io.blockquant.algo.RtnSettings;
import io.blockquant.algo.WeightFormat;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.schedule.QuantizeJob;
import io.blockquant.schedule.QuantizeSettings;
import io.blockquant.spark.SparkSessions;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import org.apache.spark.sql.SparkSession;

/**
 * The whole quantize job on the tiny model: RTN and GPTQ W4 g64 through {@link SequentialQuantizeJob} on a
 * local (or given) Spark master, each into a store written to a temporary folder and deleted, no perplexity.
 * Wall time and peak memory per method; OmniQuant on one block beside them when asked.
 */
public final class EndToEndQuantize {

    private final BenchReport report;

    public EndToEndQuantize(BenchReport report) {
        this.report = report;
    }

    /**
     * Runs on the launcher's BLAS threads ({@code launcherBlasThreads}: one per Spark task, as the job runs);
     * {@code master} null for {@code local[*]}; {@code omniQuant}: also OmniQuant on one block for
     * {@code omniQuantEpochs} epochs, extrapolated (slow).
     */
    public void run(String modelDir, CalibrationSet calibration, String master, int launcherBlasThreads, boolean omniQuant,
                    int omniQuantEpochs) throws IOException {
        CpuBlas.useThreads(launcherBlasThreads);
        int nsamples = calibration.size(), seqlen = calibration.seqlen();
        String s = "4. end to end on " + new org.apache.hadoop.fs.Path(modelDir).getName() + " (SequentialQuantizeJob, local Spark, "
                + nsamples + "×" + seqlen + " calibration tokens, store written and deleted, no perplexity)";
        SparkSession spark = SparkSessions.getOrCreate("blockquant bench", master);
        report.row(s, "Spark", spark.sparkContext().master(), "BLAS threads " + launcherBlasThreads
                + " per task; session started before timing, the first run still pays Spark's first-job warm-up");
        IntQuantSpec w4g64 = new IntQuantSpec(4, 64, false);
        Path tmp = Files.createTempDirectory("blockquant-bench-");
        try {
            for (String method : List.of("rtn", "gptq")) {
                WeightFormat format = new WeightFormat(w4g64, null);
                QuantizeSettings settings = new QuantizeSettings(method.equals("gptq")
                        ? new GptqSettings(format, 0.01, false, false, LorcSettings.NONE)
                        : new RtnSettings(format, LorcSettings.NONE),
                        0, null, nsamples, seqlen, 0, 8, QuantizeSettings.SEQUENTIAL);
                String store = tmp.resolve(method).toAbsolutePath().toString();
                MemoryProbe probe = MemoryProbe.start();
                long t0 = System.nanoTime();
                QuantizeJob.run(spark, new QuantizeJob.Request(modelDir, store, settings, false), calibration, System.err);
                double seconds = (System.nanoTime() - t0) / 1e9;
                MemoryProbe.Peaks p = probe.peaks();
                report.row(s, settings.label() + ": wall time", String.format(Locale.ROOT, "%.1f s", seconds),
                        String.format(Locale.ROOT, "peak heap %s, peak RSS %s%s (ND4J off-heap is in RSS only)", BenchReport.megabytes(p.heapBytes()),
                                BenchReport.megabytes(p.rssPeakBytes()), p.rssPeakIsSinceStart() ? " since start" : ""));
                report.put("e2e_" + method + "_seconds", seconds);
                report.put("e2e_" + method + "_heap_peak_mb", p.heapBytes() / 1e6);
                report.put("e2e_" + method + "_rss_peak_mb", p.rssPeakBytes() / 1e6);
            }
            if (omniQuant) OmniQuantBlockCost.run(report, s, modelDir, calibration, omniQuantEpochs);
            else report.note(s, "OmniQuant W2A16 g64: not run (slow); --omniquant times one block × " + omniQuantEpochs + " epochs, extrapolated");
        } finally {
            deleteTree(tmp);
        }
    }

    private static void deleteTree(Path root) throws IOException {
        if (!Files.exists(root)) return;
        try (var paths = Files.walk(root)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        }
    }
}
