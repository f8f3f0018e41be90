package io.blockquant.cli;

import io.blockquant.bench.BenchReport;
import io.blockquant.bench.BenchSettings;
import io.blockquant.bench.BlockForwardSpeed;
import io.blockquant.bench.BlockMemory;
import io.blockquant.bench.CpuBlas;
import io.blockquant.bench.EndToEndQuantize;
import io.blockquant.bench.GptqLlama7bCost;
import io.blockquant.bench.MachineFacts;
import io.blockquant.bench.MatmulCeiling;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TextTokenizer;
import io.blockquant.tensor.Backends;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code bench}: how fast the engine is, against the machine's own limit (float32 matrix products through
 * the same backend), and how the cost grows from tiny-llama to Llama-7B shapes.
 *
 * <p>A plain subcommand rather than JMH: what is timed is whole-block and whole-job work (a block forward,
 * a GPTQ layer, a Spark job) that runs for seconds, in the job's own runtime (its launcher, heap, ND4J
 * threads, local Spark). At that length JMH's forks and dead-code guards add little and would take the
 * work out of the runtime it is measured for; warm-up runs, repeated runs and their median are enough.
 * Figures come from one shared machine: the load average is printed beside them.
 *
 * <p>Each section is a class of {@code io.blockquant.bench}; this command parses the flags, draws the
 * end-to-end calibration set and prints what the sections report.
 */
@Command(name = "bench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Benchmarks: matrix-product ceiling, block forward/backward, GPTQ at Llama-7B shapes, end to end on",
            "tiny-llama, memory. Prints one table; --json ends the output with one JSON object on the last line.",
            "Sections: sgemm, forward, gptq, e2e, memory (all by default, about 3 minutes on 2 cores)."})
public final class BenchCommand implements Callable<Integer> {

    static final List<String> SECTIONS = List.of("sgemm", "forward", "gptq", "e2e", "memory");

    @Option(names = "--only", split = ",", paramLabel = "SECTION[,SECTION...]", description = "sections to run: sgemm, forward, gptq, e2e, memory (default: all)")
    List<String> only = SECTIONS;

    @Option(names = "--quick", description = "tiny sizes (7B shapes divided by 8, a few hundred tokens): a smoke run of seconds, not a measurement")
    boolean quick;

    @Option(names = "--json", description = "end the output with one JSON object on the last line")
    boolean json;

    @Option(names = "--repeats", paramLabel = "N", description = "timed runs per measurement, after --warmups untimed ones; the median is reported (default: ${DEFAULT-VALUE}; 1 with --quick)")
    int repeats = 3;

    @Option(names = "--warmups", paramLabel = "N", description = "untimed runs before the timed ones (default: ${DEFAULT-VALUE})")
    int warmups = 1;

    @Option(names = "--threads", paramLabel = "N", description = "BLAS threads for sections sgemm, forward, gptq, memory (default: the machine's cores); e2e keeps the launcher's (one per Spark task)")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--model", paramLabel = "DIR", description = "the tiny model for the tiny shapes and the end-to-end runs (default: ${DEFAULT-VALUE})")
    String model = Defaults.model();

    @Option(names = "--hessian-windows", paramLabel = "N", description = "GPTQ: windows of 2048 tokens the Hessian is measured on, extrapolated to --calib-windows (default: ${DEFAULT-VALUE})")
    int hessianWindows = 1;

    @Option(names = "--calib-windows", paramLabel = "N", description = "GPTQ: calibration windows of 2048 tokens a 7B run uses (default: ${DEFAULT-VALUE})")
    int calibWindows = 128;

    @Option(names = "--gptq-shrink", paramLabel = "K", description = "GPTQ column loop: each 7B layer measured with both dimensions divided by K, extrapolated by K³ (default: ${DEFAULT-VALUE}; 32 with --quick)")
    int gptqShrink = 8;

    @Option(names = "--backward-7b", description = "also time forward+backward of the 7B-shaped block through the OmniQuant objective (about a minute, several GB of heap)")
    boolean backward7b;

    @Option(names = "--e2e-nsamples", paramLabel = "N", description = "end to end: calibration windows (default: ${DEFAULT-VALUE})")
    int e2eNsamples = 32;

    @Option(names = "--e2e-seqlen", paramLabel = "N", description = "end to end: tokens per calibration window (default: ${DEFAULT-VALUE})")
    int e2eSeqlen = 512;

    @Option(names = "--omniquant", description = "end to end: also OmniQuant W2A16 g64 on one tiny-llama block with --omniquant-epochs, extrapolated (slow)")
    boolean omniquant;

    @Option(names = "--omniquant-epochs", paramLabel = "N", description = "epochs measured for --omniquant; the recipe's 40 are extrapolated (default: ${DEFAULT-VALUE})")
    int omniquantEpochs = 2;

    @Option(names = "--master", description = "Spark master for the end-to-end runs (default: local[*])")
    String master;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec cmd;

    @Override
    public Integer call() throws IOException {
        Set<String> sections = new LinkedHashSet<>();
        for (String s : only) {
            String name = s.trim().toLowerCase(Locale.ROOT);
            if (!SECTIONS.contains(name)) throw new IllegalArgumentException("--only: unknown section '" + s + "'; sections are " + SECTIONS);
            sections.add(name);
        }
        if (quick) {
            if (!cmdSet("--repeats")) repeats = 1;
            if (!cmdSet("--warmups")) warmups = 1;
            if (!cmdSet("--gptq-shrink")) gptqShrink = 32;
        }
        // every section built before any runs: a bad flag stops the command before it measures anything
        TensorBackend be = Backends.cpu();
        BenchReport report = new BenchReport();
        BenchSettings settings = new BenchSettings(warmups, repeats, threads, quick);
        MatmulCeiling ceiling = new MatmulCeiling(be, settings, report);
        GptqLlama7bCost gptq = new GptqLlama7bCost(be, settings, report, hessianWindows, calibWindows, gptqShrink);

        long start = System.nanoTime();
        int launcherBlasThreads = CpuBlas.threads();
        MachineFacts.report(report, settings, launcherBlasThreads);
        if (sections.contains("sgemm")) ceiling.run();
        if (sections.contains("forward")) {
            new BlockForwardSpeed(be, settings, report).run(ModelSpecReader.read(new Path(model), new Configuration()), backward7b, ceiling);
        }
        if (sections.contains("gptq")) gptq.run();
        if (sections.contains("e2e")) {
            new EndToEndQuantize(report).run(model, calibration(), master, launcherBlasThreads, omniquant, omniquantEpochs);
        }
        if (sections.contains("memory")) new BlockMemory(be, settings, report).run();
        report.note("scaling", "scaling over 1 and 2 executors (standalone cluster): out of scope of this command, not measured");
        double seconds = (System.nanoTime() - start) / 1e9;
        report.put("seconds", seconds);
        report.put("load_average_end", MachineFacts.loadAverage());
        System.out.print(report.table());
        System.out.printf(Locale.ROOT, "%nbench done in %.1f s (load average now %s)%n", seconds, MachineFacts.loadAverage());
        if (json) System.out.println(report.json());
        return 0;
    }

    private boolean cmdSet(String flag) {
        return cmd != null && cmd.commandLine().getParseResult() != null && cmd.commandLine().getParseResult().hasMatchedOption(flag);
    }

    /** The end-to-end runs' calibration windows, drawn from the corpus train files as quantize draws them. */
    private CalibrationSet calibration() throws IOException {
        int nsamples = quick ? Math.min(e2eNsamples, 4) : e2eNsamples, seqlen = quick ? Math.min(e2eSeqlen, 128) : e2eSeqlen;
        Configuration conf = new Configuration();
        try (TextTokenizer tok = TextTokenizer.load(new Path(model), conf)) {
            List<Integer> all = new ArrayList<>();
            for (String f : Defaults.calibration()) for (int t : tok.encode(EvalCommand.readText(new Path(f), conf))) all.add(t);
            return CalibrationSet.draw(all.stream().mapToInt(Integer::intValue).toArray(), "corpus train files", nsamples, seqlen, 0);
        }
    }
}
