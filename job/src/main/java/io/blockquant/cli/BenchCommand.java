package io.blockquant.cli;

import io.blockquant.algo.GptqConfig;
import io.blockquant.algo.GptqQuantizer;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.algo.OmniQuantCalibrator;
import io.blockquant.algo.OmniQuantConfig;
import io.blockquant.algo.omniquant.HeapBlock;
import io.blockquant.algo.omniquant.OmniQuantObjective;
import io.blockquant.bench.BenchReport;
import io.blockquant.bench.ForwardProfile;
import io.blockquant.bench.MemoryProbe;
import io.blockquant.bench.RandomBlocks;
import io.blockquant.bench.Timing;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.Family;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TextTokenizer;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.LlamaBlock;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.schedule.QuantizeSettings;
import io.blockquant.schedule.SequentialQuantizeJob;
import io.blockquant.spark.SparkSessions;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.nd4j.linalg.factory.Nd4j;
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

    private final TensorBackend be = Nd4jBackend.INSTANCE;
    private final BenchReport report = new BenchReport();
    /** 7B shapes are divided by this in --quick runs. */
    private int shrink;
    private int launcherBlasThreads;

    @Override
    public Integer call() throws IOException {
        Set<String> sections = new LinkedHashSet<>();
        for (String s : only) {
            String name = s.trim().toLowerCase(Locale.ROOT);
            if (!SECTIONS.contains(name)) throw new IllegalArgumentException("--only: unknown section '" + s + "'; sections are " + SECTIONS);
            sections.add(name);
        }
        if (repeats < 1 || warmups < 0 || threads < 1 || hessianWindows < 1 || gptqShrink < 1) {
            throw new IllegalArgumentException("--repeats, --threads, --hessian-windows and --gptq-shrink must be ≥ 1, --warmups ≥ 0");
        }
        if (quick) {
            shrink = 8;
            if (!cmdSet("--repeats")) repeats = 1;
            if (!cmdSet("--warmups")) warmups = 1;
            if (!cmdSet("--gptq-shrink")) gptqShrink = 32;
        } else {
            shrink = 1;
        }
        long start = System.nanoTime();
        launcherBlasThreads = Nd4j.factory().blas().getMaxThreads();
        machine();
        if (sections.contains("sgemm")) sgemm();
        if (sections.contains("forward")) forward();
        if (sections.contains("gptq")) gptq();
        if (sections.contains("e2e")) endToEnd();
        if (sections.contains("memory")) memory();
        report.note("scaling", "scaling over 1 and 2 executors (standalone cluster): out of scope of this command, not measured");
        double seconds = (System.nanoTime() - start) / 1e9;
        report.put("seconds", seconds);
        report.put("load_average_end", loadAverage());
        System.out.print(report.table());
        System.out.printf(Locale.ROOT, "%nbench done in %.1f s (load average now %s)%n", seconds, loadAverage());
        if (json) System.out.println(report.json());
        return 0;
    }

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec cmd;

    private boolean cmdSet(String flag) {
        return cmd != null && cmd.commandLine().getParseResult() != null && cmd.commandLine().getParseResult().hasMatchedOption(flag);
    }

    // ---- machine ---------------------------------------------------------------------------------

    private void machine() {
        String s = "machine";
        int cores = Runtime.getRuntime().availableProcessors();
        long memTotal = meminfo("MemTotal:");
        report.row(s, "cores (JVM)", String.valueOf(cores), cpuModel());
        report.row(s, "memory", gb(memTotal), "max heap " + gb(Runtime.getRuntime().maxMemory()));
        report.row(s, "BLAS threads", String.valueOf(threads), "launcher's OMP_NUM_THREADS gave " + launcherBlasThreads + " (one per Spark task); e2e keeps that");
        report.row(s, "load average at start", loadAverage(), "a shared machine: others' work slows every figure");
        report.row(s, "Java / ND4J", System.getProperty("java.version"), Nd4j.getBackend().getClass().getSimpleName()
                + ", " + Nd4j.factory().blas().getBlasVendor());
        if (quick) report.note(s, "--quick: 7B shapes divided by 8, few tokens, one run each; a smoke run, the figures are not measurements");
        report.put("quick", quick);
        report.put("cores", cores);
        report.put("memory_gb", memTotal / 1e9);
        report.put("blas_threads", threads);
        report.put("load_average_start", loadAverage());
    }

    // ---- 1. sgemm ceiling ------------------------------------------------------------------------

    /** One product {@code x [m, k] · Wᵀ (W [n, k])}, as a linear layer computes it. */
    private record Shape(String group, String label, int m, int k, int n) {
        double flop() {
            return 2.0 * m * k * n;
        }
    }

    private void sgemm() {
        String s = "1. sgemm ceiling (float32, x·Wᵀ through the backend, as a linear layer)";
        setThreads(threads);
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
            double g = matmulGflops(sh);
            if (sh.group().equals("7b")) best7b = Math.max(best7b, g);
            report.row(s, sh.label(), String.format(Locale.ROOT, "%.1f GFLOP/s", g), "");
        }
        report.put("sgemm_gflops", best7b);
        report.row(s, "ceiling = max at " + tag + " shapes", String.format(Locale.ROOT, "%.1f GFLOP/s", best7b),
                threads + " BLAS thread(s); the figure every fraction below is taken of");
        if (!quick && threads != 1) {
            setThreads(1);
            Shape one = shapes.get(4);
            double g1 = matmulGflops(one);
            setThreads(threads);
            report.row(s, "one thread, " + one.label(), String.format(Locale.ROOT, "%.1f GFLOP/s", g1),
                    "what one Spark task gets (OMP_NUM_THREADS=1)");
            report.put("sgemm_gflops_1thread", g1);
        }
        report.put("sgemm_threads", threads);
    }

    private double matmulGflops(Shape sh) {
        Tensor x = RandomBlocks.activations(be, 1, sh.m(), sh.k());
        Tensor w = RandomBlocks.activations(be, 2, sh.n(), sh.k());
        Timing t = Timing.measure(warmups, repeats, () -> be.scratchValue(() -> be.matmul(x, w, false, true).shape()));
        x.close();
        w.close();
        return t.gflops(sh.flop());
    }

    // ---- 2. block forward (and backward) ---------------------------------------------------------

    /** Analytic forward FLOPs: linears 2·tokens·in·out; attention 2·2·heads·seq²·headDim per window, full (not causal). */
    static double forwardFlop(ModelSpec spec, int batch, int seq) {
        double tokens = (double) batch * seq;
        int h = spec.hiddenSize(), q = spec.numHeads() * spec.headDim(), kv = spec.numKvHeads() * spec.headDim();
        double linearParams = (double) h * q + 2.0 * h * kv + (double) q * h + 3.0 * h * spec.intermediateSize();
        double attention = 2.0 * 2.0 * batch * spec.numHeads() * (double) seq * seq * spec.headDim();
        return 2.0 * tokens * linearParams + attention;
    }

    private void forward() throws IOException {
        String s = "2. block forward (FLOPs: linears 2·tokens·in·out + attention 2·2·heads·seq²·headDim, full seq², "
                + "as the backend computes every score and masks after)";
        setThreads(threads);
        double ceiling = ceiling();
        ModelSpec tiny = ModelSpecReader.read(new Path(model), new Configuration());
        int tinyBatch = quick ? 2 : 8, tinySeq = quick ? 128 : 512;
        LlamaBlock tinyBlock = RandomBlocks.llama(tiny, be, 3);
        blockForward(s, "tiny-llama", tinyBlock, tinyBatch, tinySeq, ceiling, "tiny_forward_gflops", true);
        blockForwardBackward(s, "tiny-llama", tinyBlock, tinyBatch, tinySeq, ceiling, "tiny_fwd_bwd_gflops");

        ModelSpec big = RandomBlocks.llama7b(shrink);
        String tag = quick ? "7B/8-shaped" : "7B-shaped";
        LlamaBlock bigBlock = RandomBlocks.llama(big, be, 4);
        int seq = 2048 / shrink;
        blockForward(s, tag, bigBlock, 1, seq, ceiling, "block_forward_gflops", true);
        if (backward7b || quick) blockForwardBackward(s, tag, bigBlock, 1, seq, ceiling, "block7b_fwd_bwd_gflops");
        else report.note(s, tag + " forward+backward: not run by default (about a minute and several GB of heap); --backward-7b runs it");
    }

    private double ceiling() {
        Object c = report.get("sgemm_gflops");
        if (c instanceof Number n) return n.doubleValue();
        // without section 1: the q/k/v/o product alone, warmed up further (the first products of a process are slow)
        Shape sq = new Shape("7b", "", 2048 / shrink, 4096 / shrink, 4096 / shrink);
        for (int i = 0; i < 3; i++) matmulGflops(sq);
        double g = matmulGflops(sq);
        report.note("2. block forward", String.format(Locale.ROOT, "ceiling measured here (section 1 not run): %.1f GFLOP/s at %d×%d · %d×%d",
                g, sq.m(), sq.k(), sq.k(), sq.n()));
        report.put("sgemm_gflops", g);
        return g;
    }

    private void blockForward(String s, String name, LlamaBlock block, int batch, int seq, double ceiling, String key,
                              boolean profile) {
        ModelSpec spec = block.spec();
        Tensor x = RandomBlocks.activations(be, 5, batch * seq, spec.hiddenSize());
        Timing t = Timing.measure(warmups, repeats, () -> be.scratchValue(() -> block.forward(x, batch, seq).shape()));
        double flop = forwardFlop(spec, batch, seq);
        double g = t.gflops(flop);
        report.row(s, name + " forward, " + batch + "×" + seq + " tokens", String.format(Locale.ROOT, "%.1f GFLOP/s", g),
                String.format(Locale.ROOT, "%.3f s median of %d, %.0f GFLOP, %.0f %% of the ceiling", t.medianSeconds(), t.runs(),
                        flop / 1e9, 100 * g / ceiling));
        report.put(key, g);
        report.put(key.replace("gflops", "fraction"), g / ceiling);
        report.put(key.replace("gflops", "seconds"), t.medianSeconds());
        if (profile) {
            Map<String, Double> split = ForwardProfile.run(block, x, batch, seq);
            double total = split.values().stream().mapToDouble(Double::doubleValue).sum();
            Map<String, Object> json = new LinkedHashMap<>();
            for (Map.Entry<String, Double> e : split.entrySet()) {
                report.row(s, "  split: " + e.getKey(), String.format(Locale.ROOT, "%.2f s", e.getValue()),
                        String.format(Locale.ROOT, "%.0f %%", 100 * e.getValue() / total));
                json.put(e.getKey(), Math.round(e.getValue() * 1000) / 1000.0);
            }
            double matmul = split.get(ForwardProfile.LINEARS) + split.get(ForwardProfile.ATTENTION_MATMUL);
            report.row(s, "  matmul-only rate of that run", String.format(Locale.ROOT, "%.1f GFLOP/s", flop / matmul / 1e9),
                    String.format(Locale.ROOT, "matmuls %.0f %% of %.2f s; the rest is Java loops and copies", 100 * matmul / total, total));
            report.put(key.replace("gflops", "split_seconds"), json);
        }
        x.close();
    }

    /** Forward + backward through the OmniQuant objective (W2 g64 LWC, no LET: W2A16), FLOPs counted as 3× the forward. */
    private void blockForwardBackward(String s, String name, LlamaBlock block, int batch, int seq, double ceiling, String key) {
        ModelSpec spec = block.spec();
        float[] x = RandomBlocks.activations(be, 6, batch * seq, spec.hiddenSize()).toFloats();
        float[] target = be.scratchValue(() -> block.forward(be.fromFloats(x, (long) batch * seq, spec.hiddenSize()), batch, seq).toFloats());
        int group = 64; // 7B/8's MLP width 1376 takes groups of 32 at most
        while (spec.intermediateSize() % group != 0 || spec.hiddenSize() % group != 0) group /= 2;
        OmniQuantObjective objective = new OmniQuantObjective(HeapBlock.of(block), null, new IntQuantSpec(2, group, false), true, 16);
        boolean big = spec.hiddenSize() >= 4096;
        Timing t = Timing.measure(big ? 0 : warmups, big ? 1 : repeats, () -> objective.evaluate(be, x, target, batch, seq, true, false));
        double flop = 3 * forwardFlop(spec, batch, seq);
        double g = t.gflops(flop);
        report.row(s, name + " forward+backward (OmniQuant W2 g" + group + " step), " + batch + "×" + seq, String.format(Locale.ROOT, "%.1f GFLOP/s", g),
                String.format(Locale.ROOT, "%.3f s (%s), FLOPs = 3× forward, %.0f %% of the ceiling; includes LWC fake-quant in Java",
                        t.medianSeconds(), t.runs() == 1 ? "one run" : "median of " + t.runs(), 100 * g / ceiling));
        report.put(key, g);
        report.put(key.replace("gflops", "seconds"), t.medianSeconds());
    }

    // ---- 3. GPTQ on a 7B-shaped block ------------------------------------------------------------

    /** A 7B block's linear layers, {@code [out, in]}, in true-sequential order. */
    private static final String[] LAYERS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

    private static int[] layerShape(String layer) {
        switch (layer) {
            case "gate_proj": case "up_proj": return new int[] {11008, 4096};
            case "down_proj": return new int[] {4096, 11008};
            default: return new int[] {4096, 4096};
        }
    }

    private void gptq() {
        String s = "3. GPTQ W4 g64 on one 7B-shaped block";
        setThreads(threads);
        int seq = 2048 / shrink;
        int tokens = hessianWindows * seq;
        // Hessians per block: the groups (q,k,v), (o), (gate,up) read 4096-wide inputs, (down) an 11008-wide one
        double perBlockMeasured = 0;
        Map<Integer, Double> hessianSeconds = new LinkedHashMap<>();
        for (int width : new int[] {4096 / shrink, 11008 / shrink}) {
            Tensor x = RandomBlocks.activations(be, 7, tokens, width);
            HessianAccumulator acc = new HessianAccumulator(width);
            Timing t = Timing.measure(0, 1, () -> acc.add(x));
            x.close();
            hessianSeconds.put(width, t.medianSeconds());
            double flop = 2.0 * tokens * width * width;
            report.row(s, "Hessian XᵀX, width " + width + ", " + tokens + " tokens", String.format(Locale.ROOT, "%.2f s", t.medianSeconds()),
                    String.format(Locale.ROOT, "%.1f GFLOP/s (matmul + float64 running sum on the heap)", t.gflops(flop)));
        }
        perBlockMeasured = 3 * hessianSeconds.get(4096 / shrink) + hessianSeconds.get(11008 / shrink);
        double hessianScale = (double) calibWindows * 2048 / tokens * (quick ? (double) shrink * shrink : 1);
        double perBlockHessian = perBlockMeasured * hessianScale;
        report.row(s, "Hessians of one block (3× width 4096 + 1× 11008), measured", String.format(Locale.ROOT, "%.2f s", perBlockMeasured),
                hessianWindows + "×" + seq + " tokens");
        report.row(s, "  extrapolated to " + calibWindows + "×2048 tokens", String.format(Locale.ROOT, "%.1f s", perBlockHessian),
                "assumes time linear in tokens (one XᵀX per batch)" + (quick ? ", and × " + shrink + "² for the shrunk widths" : "")
                        + "; excludes re-running the block prefix per group (section 2)");
        report.put("hessian_tokens_measured", tokens);
        report.put("hessian_block_seconds_measured", perBlockMeasured);
        report.put("hessian_block_seconds_" + calibWindows + "x2048", perBlockHessian);

        // the column loop, one layer at a time, each shape shrunk by k in both dimensions
        int k = gptqShrink;
        // group 64/k keeps the full shape's groups per row (11008/k is no multiple of 64 for k > 4)
        int group = Math.max(1, 64 / k);
        if (64 % k != 0) throw new IllegalArgumentException("--gptq-shrink must divide 64 (groups of 64/K columns), got " + k);
        GptqConfig cfg = GptqConfig.of(new IntQuantSpec(4, group, false));
        Map<String, Double> measuredByShape = new LinkedHashMap<>(), factorByShape = new LinkedHashMap<>();
        Map<String, Object> layerJson = new LinkedHashMap<>();
        double blockLoop = 0;
        for (String layer : LAYERS) {
            int[] full = layerShape(layer);
            int rows = full[0] / k, cols = full[1] / k;
            String key = rows + "×" + cols;
            if (!measuredByShape.containsKey(key)) {
                double[] h = randomHessian(cols);
                Tensor w = RandomBlocks.activations(be, 8, rows, cols);
                float[] wScaled = w.toFloats();
                for (int i = 0; i < wScaled.length; i++) wScaled[i] *= 0.02f;
                Tensor weight = be.fromFloats(wScaled, rows, cols);
                measuredByShape.put(key, Timing.measure(0, 1, () -> GptqQuantizer.quantize(weight, h, cfg)).medianSeconds());
                factorByShape.put(key, Timing.measure(0, 1, () -> inverseFactor(h, cols)).medianSeconds());
            }
            double measured = measuredByShape.get(key), factorShare = factorByShape.get(key) / measured;
            double extrapolated = measured * k * k * k;
            blockLoop += extrapolated;
            layerJson.put(layer, Math.round(extrapolated * 10) / 10.0);
            report.row(s, "column loop " + layer + " " + full[0] + "×" + full[1], String.format(Locale.ROOT, "%.0f s", extrapolated),
                    String.format(Locale.ROOT, "measured %.2f s at %s g%d, × %d³; H⁻¹ factor %.0f %% of it", measured, key, group, k, 100 * Math.min(1, factorShare)));
        }
        // how well n³ holds: the H⁻¹ factor at two sizes
        int n1 = Math.max(64, 4096 / k), n2 = 2 * n1;
        double f1 = Timing.measure(0, 1, () -> inverseFactor(randomHessian(n1), n1)).medianSeconds();
        double f2 = Timing.measure(0, 1, () -> inverseFactor(randomHessian(n2), n2)).medianSeconds();
        double exponent = Math.log(f2 / f1) / Math.log(2);
        report.row(s, "H⁻¹ factor (Cholesky, Java triangular solve, matmul) " + n1 + " → " + n2, String.format(Locale.ROOT, "n^%.2f", exponent),
                String.format(Locale.ROOT, "%.2f s → %.2f s; the extrapolation assumes n³", f1, f2));
        report.row(s, "column loops of one block, extrapolated", String.format(Locale.ROOT, "%.0f s", blockLoop),
                "layers one after another; the job runs a group's layers as parallel tasks (÷ up to the cores)");
        double block = blockLoop + perBlockHessian;
        double model7b = 32 * block;
        report.row(s, "32-block 7B model, GPTQ only, extrapolated", String.format(Locale.ROOT, "%.1f h", model7b / 3600),
                "32 × (Hessians + column loops); assumes blocks cost alike, no Spark overhead, one layer at a time");
        report.put("gptq_layer_seconds_est", layerJson);
        report.put("gptq_block_column_loops_seconds_est", blockLoop);
        report.put("gptq_inverse_factor_exponent", exponent);
        report.put("gptq_7b_model_hours_est", model7b / 3600);
    }

    /** A well-conditioned Hessian {@code 2/n·XᵀX} of random inputs, n = 2·width tokens. */
    private double[] randomHessian(int width) {
        HessianAccumulator acc = new HessianAccumulator(width);
        Tensor x = RandomBlocks.activations(be, 9, Math.max(256, 2 * width), width);
        acc.add(x);
        x.close();
        return acc.hessian();
    }

    /** The same backend calls GPTQ makes for the upper Cholesky factor of H⁻¹ (GptqQuantizer.upperCholeskyOfInverse). */
    private float[] inverseFactor(double[] h, int n) {
        float[] hf = new float[n * n];
        double mean = 0;
        for (int c = 0; c < n; c++) mean += h[c * n + c];
        for (int i = 0; i < hf.length; i++) hf[i] = (float) h[i];
        for (int c = 0; c < n; c++) hf[c * n + c] += (float) (0.01 * mean / n);
        float[] eye = new float[n * n];
        for (int i = 0; i < n; i++) eye[i * n + i] = 1f;
        return be.scratchValue(() -> {
            Tensor l = be.cholesky(be.fromFloats(hf, n, n));
            Tensor linv = be.solveTriangular(l, be.fromFloats(eye, n, n), true);
            Tensor inv = be.matmul(linv, linv, true, false);
            return be.transpose(be.cholesky(inv)).toFloats();
        });
    }

    // ---- 4. end to end on tiny-llama -------------------------------------------------------------

    private void endToEnd() throws IOException {
        setThreads(launcherBlasThreads);
        Configuration conf = new Configuration();
        int nsamples = quick ? Math.min(e2eNsamples, 4) : e2eNsamples, seqlen = quick ? Math.min(e2eSeqlen, 128) : e2eSeqlen;
        String s = "4. end to end on " + new Path(model).getName() + " (SequentialQuantizeJob, local Spark, "
                + nsamples + "×" + seqlen + " calibration tokens, store written and deleted, no perplexity)";
        CalibrationSet calibration;
        try (TextTokenizer tok = TextTokenizer.load(new Path(model), conf)) {
            List<Integer> all = new ArrayList<>();
            for (String f : Defaults.calibration()) for (int t : tok.encode(EvalCommand.readText(new Path(f), conf))) all.add(t);
            calibration = CalibrationSet.draw(all.stream().mapToInt(Integer::intValue).toArray(), "corpus train files", nsamples, seqlen, 0);
        }
        var spark = SparkSessions.getOrCreate("blockquant bench", master);
        report.row(s, "Spark", spark.sparkContext().master(), "BLAS threads " + launcherBlasThreads
                + " per task; session started before timing, the first run still pays Spark's first-job warm-up");
        IntQuantSpec w4g64 = new IntQuantSpec(4, 64, false);
        java.nio.file.Path tmp = Files.createTempDirectory("blockquant-bench-");
        try {
            for (String method : List.of("rtn", "gptq")) {
                io.blockquant.algo.WeightFormat format = new io.blockquant.algo.WeightFormat(w4g64, null);
                QuantizeSettings settings = new QuantizeSettings(method.equals("gptq")
                        ? new io.blockquant.algo.GptqSettings(format, 0.01, false, false, io.blockquant.algo.LorcSettings.NONE)
                        : new io.blockquant.algo.RtnSettings(format, io.blockquant.algo.LorcSettings.NONE),
                        0, null, nsamples, seqlen, 0, 8, QuantizeSettings.SEQUENTIAL);
                String store = tmp.resolve(method).toAbsolutePath().toString();
                MemoryProbe probe = MemoryProbe.start();
                long t0 = System.nanoTime();
                SequentialQuantizeJob.run(spark, new io.blockquant.schedule.QuantizeJob.Request(model, store, settings, false), calibration, System.err);
                double seconds = (System.nanoTime() - t0) / 1e9;
                MemoryProbe.Peaks p = probe.peaks();
                report.row(s, settings.label() + ": wall time", String.format(Locale.ROOT, "%.1f s", seconds),
                        String.format(Locale.ROOT, "peak heap %s, peak RSS %s%s (ND4J off-heap is in RSS only)", mb(p.heapBytes()),
                                mb(p.rssPeakBytes()), p.rssPeakIsSinceStart() ? " since start" : ""));
                report.put("e2e_" + method + "_seconds", seconds);
                report.put("e2e_" + method + "_heap_peak_mb", p.heapBytes() / 1e6);
                report.put("e2e_" + method + "_rss_peak_mb", p.rssPeakBytes() / 1e6);
            }
            if (omniquant) omniQuant(s, calibration, conf);
            else report.note(s, "OmniQuant W2A16 g64: not run (slow); --omniquant times one block × " + omniquantEpochs + " epochs, extrapolated");
        } finally {
            deleteTree(tmp);
        }
    }

    /** OmniQuant W2A16 g64 on block 0 for a few epochs, extrapolated to the recipe's epochs × every block. */
    private void omniQuant(String s, CalibrationSet calibration, Configuration conf) {
        Path dir = new Path(model);
        ModelSpec spec = ModelSpecReader.read(dir, conf);
        int n = calibration.size(), seq = calibration.seqlen();
        int[][] windows = calibration.windows().toArray(new int[0][]);
        DecoderBlock block;
        float[] inputs;
        try (Checkpoint ckpt = Checkpoint.open(dir, conf)) {
            CausalLm lm = new ModelLoader(ckpt, spec, be).model();
            block = lm.blocks().get(0);
            inputs = be.scratchValue(() -> lm.embed(windows).toFloats());
        }
        DecoderBlock fp = block;
        float[] targets = be.scratchValue(() -> fp.forward(be.fromFloats(inputs, (long) n * seq, spec.hiddenSize()), n, seq).toFloats());
        OmniQuantConfig recipe = OmniQuantConfig.of(Family.LLAMA, 2, 64, 16);
        MemoryProbe probe = MemoryProbe.start();
        long t0 = System.nanoTime();
        OmniQuantCalibrator.calibrate(block, inputs, targets, n, seq, recipe.withEpochs(omniquantEpochs), 0, null);
        double seconds = (System.nanoTime() - t0) / 1e9;
        MemoryProbe.Peaks p = probe.peaks();
        double whole = seconds / omniquantEpochs * recipe.epochs() * spec.numLayers();
        report.row(s, "OmniQuant W2A16 g64, block 0 × " + omniquantEpochs + " epochs", String.format(Locale.ROOT, "%.1f s", seconds),
                "peak heap " + mb(p.heapBytes()) + ", peak RSS " + mb(p.rssPeakBytes()));
        report.row(s, "  extrapolated: " + recipe.epochs() + " epochs × " + spec.numLayers() + " blocks", String.format(Locale.ROOT, "%.0f s", whole),
                "assumes epochs and blocks cost alike; excludes the Spark stages around it");
        report.put("e2e_omniquant_block_seconds", seconds);
        report.put("e2e_omniquant_model_seconds_est", whole);
    }

    // ---- 5. memory of one 7B-shaped block --------------------------------------------------------

    private void memory() {
        String s = "5. memory while calibrating one 7B-shaped block";
        setThreads(threads);
        int windowsPerTask = 8, seq = 2048 / shrink;
        ModelSpec spec = RandomBlocks.llama7b(shrink);
        MemoryProbe probe = MemoryProbe.start();
        long heapBefore = Runtime.getRuntime().totalMemory() - Runtime.getRuntime().freeMemory();
        long rssBefore = MemoryProbe.statusBytes("VmRSS:");
        LlamaBlock block = RandomBlocks.llama(spec, be, 10);
        // one partition of block inputs as an executor reads it (ActivationFiles: a float[] on the heap)
        float[] partition = new RandomBlocks.FastRandom(11).uniform((long) windowsPerTask * seq * spec.hiddenSize(), 1.0);
        // the driver's merged Hessians, one per group (q,k,v | o | gate,up | down), from one window of the partition
        List<double[]> hessians = new ArrayList<>();
        int sample = Math.min(seq, 256);
        float[] rows = java.util.Arrays.copyOf(partition, sample * spec.hiddenSize());
        for (int width : new int[] {spec.hiddenSize(), spec.hiddenSize(), spec.hiddenSize(), spec.intermediateSize()}) {
            HessianAccumulator acc = new HessianAccumulator(width);
            float[] in = width == spec.hiddenSize() ? rows : new RandomBlocks.FastRandom(12).uniform((long) sample * width, 1.0);
            acc.add(be.fromFloats(in, sample, width));
            hessians.add(acc.hessian());
        }
        // a forward over one window, as the Hessian and output jobs run the block
        be.scratchValue(() -> block.forward(be.fromFloats(java.util.Arrays.copyOf(partition, seq * spec.hiddenSize()), seq,
                spec.hiddenSize()), 1, seq).shape());
        MemoryProbe.Peaks p = probe.peaks();
        long weights = 0;
        for (var l : block.linears()) weights += 4L * l.weight().length();
        long hessianBytes = 0;
        for (double[] h : hessians) hessianBytes += 8L * h.length;
        report.row(s, "holds: fp block weights (off-heap)", mb(weights), "7 linears, float32");
        report.row(s, "holds: one partition of activations (heap)", mb(4L * partition.length), windowsPerTask + " windows × " + seq + " tokens × " + spec.hiddenSize());
        report.row(s, "holds: Hessians, one per group (driver heap)", mb(hessianBytes), "float64: 3 × " + spec.hiddenSize() + "² + 1 × " + spec.intermediateSize() + "²");
        report.row(s, "measured: peak heap", mb(p.heapBytes()), "heap in use before: " + mb(heapBefore) + " (sum of pool peaks: an upper bound)");
        report.row(s, "measured: peak RSS", mb(p.rssPeakBytes()), "RSS before: " + mb(rssBefore) + (p.rssPeakIsSinceStart() ? "; VmHWM not resettable: since start" : "; includes the forward's off-heap scores"));
        // GPTQ's own working set, read off GptqQuantizer at the down_proj shape (a full-size run takes about an hour)
        long n = spec.intermediateSize(), r = spec.hiddenSize();
        long gptqHeap = 8 * n * n * 2 + 4 * n * n * 2 + (4 + 4 + 8 + 4) * n * n + 4 * r * n * 3;
        report.row(s, "computed: GPTQ heap at down_proj " + r + "×" + n, mb(gptqHeap),
                "Hessian + its copy (f64), f32 copy + identity, the triangular solve's 2 f32 inputs + f64 result + f32 output, W/levels/codes; not measured");
        report.put("memory_block_weights_mb", weights / 1e6);
        report.put("memory_partition_mb", 4.0 * partition.length / 1e6);
        report.put("memory_hessians_mb", hessianBytes / 1e6);
        report.put("memory_heap_peak_mb", p.heapBytes() / 1e6);
        report.put("memory_rss_peak_mb", p.rssPeakBytes() / 1e6);
        report.put("memory_gptq_down_proj_heap_mb_computed", gptqHeap / 1e6);
        if (partition.length == 0 || hessians.isEmpty()) throw new IllegalStateException("unreachable: keeps the holdings alive");
    }

    // ---- helpers ---------------------------------------------------------------------------------

    private static void setThreads(int n) {
        Nd4j.factory().blas().setMaxThreads(n);
    }

    private static String mb(long bytes) {
        return bytes < 0 ? "n/a" : String.format(Locale.ROOT, "%.0f MB", bytes / 1e6);
    }

    private static String gb(long bytes) {
        return bytes < 0 ? "n/a" : String.format(Locale.ROOT, "%.1f GB", bytes / 1e9);
    }

    private static long meminfo(String key) {
        try {
            for (String line : Files.readAllLines(java.nio.file.Path.of("/proc/meminfo"))) {
                if (line.startsWith(key)) return Long.parseLong(line.substring(key.length()).trim().split("\\s+")[0]) * 1024;
            }
        } catch (IOException | RuntimeException e) {
            return -1;
        }
        return -1;
    }

    private static String cpuModel() {
        try {
            for (String line : Files.readAllLines(java.nio.file.Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("model name")) return line.substring(line.indexOf(':') + 1).trim();
            }
        } catch (IOException | RuntimeException e) {
            return "";
        }
        return "";
    }

    private static String loadAverage() {
        try {
            String[] f = Files.readString(java.nio.file.Path.of("/proc/loadavg")).trim().split("\\s+");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (IOException | RuntimeException e) {
            return "n/a";
        }
    }

    private static void deleteTree(java.nio.file.Path root) throws IOException {
        if (!Files.exists(root)) return;
        try (var paths = Files.walk(root)) {
            for (java.nio.file.Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        }
    }
}
