package io.blockquant.bench;

import io.blockquant.algo.omniquant.HeapBlock;
import io.blockquant.algo.omniquant.OmniQuantObjective;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.llama.LlamaBlock;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * How fast a Llama block runs forward (and forward+backward, as an OmniQuant step) at tiny-llama's and
 * Llama-7B's shapes, as a fraction of the matrix-product ceiling, with where the forward's time goes.
 */
public final class BlockForwardSpeed {

    private static final String SECTION = "2. block forward (FLOPs: linears 2·tokens·in·out + attention 2·2·heads·seq²·headDim, full seq², "
            + "as the backend computes every score and masks after)";

    private final TensorBackend be;
    private final BenchSettings settings;
    private final BenchReport report;

    public BlockForwardSpeed(TensorBackend be, BenchSettings settings, BenchReport report) {
        this.be = be;
        this.settings = settings;
        this.report = report;
    }

    /** {@code tiny}: the tiny model's spec; {@code backward7b}: also the 7B-shaped forward+backward (a minute, GBs of heap). */
    public void run(ModelSpec tiny, boolean backward7b, MatmulCeiling ceilings) {
        String s = SECTION;
        boolean quick = settings.quick();
        int shrink = settings.shrink();
        CpuBlas.useThreads(settings.threads());
        double ceiling = ceilings.ceiling();
        int tinyBatch = quick ? 2 : 8, tinySeq = quick ? 128 : 512;
        LlamaBlock tinyBlock = RandomBlocks.llama(tiny, be, 3);
        forward(s, "tiny-llama", tinyBlock, tinyBatch, tinySeq, ceiling, "tiny_forward_gflops");
        forwardBackward(s, "tiny-llama", tinyBlock, tinyBatch, tinySeq, ceiling, "tiny_fwd_bwd_gflops");

        ModelSpec big = RandomBlocks.llama7b(shrink);
        String tag = quick ? "7B/8-shaped" : "7B-shaped";
        LlamaBlock bigBlock = RandomBlocks.llama(big, be, 4);
        int seq = 2048 / shrink;
        forward(s, tag, bigBlock, 1, seq, ceiling, "block_forward_gflops");
        if (backward7b || quick) forwardBackward(s, tag, bigBlock, 1, seq, ceiling, "block7b_fwd_bwd_gflops");
        else report.note(s, tag + " forward+backward: not run by default (about a minute and several GB of heap); --backward-7b runs it");
    }

    /** The forward's rate, then one profiled forward split by kind of work. */
    private void forward(String s, String name, LlamaBlock block, int batch, int seq, double ceiling, String key) {
        ModelSpec spec = block.spec();
        Tensor x = RandomBlocks.activations(be, 5, batch * seq, spec.hiddenSize());
        Timing t = Timing.measure(settings.warmups(), settings.repeats(), () -> be.scratchValue(() -> block.forward(x, batch, seq).shape()));
        double flop = BlockFlops.llamaForward(spec, batch, seq);
        double g = t.gflops(flop);
        report.row(s, name + " forward, " + batch + "×" + seq + " tokens", String.format(Locale.ROOT, "%.1f GFLOP/s", g),
                String.format(Locale.ROOT, "%.3f s median of %d, %.0f GFLOP, %.0f %% of the ceiling", t.medianSeconds(), t.runs(),
                        flop / 1e9, 100 * g / ceiling));
        report.put(key, g);
        report.put(key.replace("gflops", "fraction"), g / ceiling);
        report.put(key.replace("gflops", "seconds"), t.medianSeconds());
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
        x.close();
    }

    /** Forward + backward through the OmniQuant objective (W2 g64 LWC, no LET: W2A16), FLOPs counted as 3× the forward. */
    private void forwardBackward(String s, String name, LlamaBlock block, int batch, int seq, double ceiling, String key) {
        ModelSpec spec = block.spec();
        float[] x = RandomBlocks.activations(be, 6, batch * seq, spec.hiddenSize()).toFloats();
        float[] target = be.scratchValue(() -> block.forward(be.fromFloats(x, (long) batch * seq, spec.hiddenSize()), batch, seq).toFloats());
        int group = 64; // 7B/8's MLP width 1376 takes groups of 32 at most
        while (spec.intermediateSize() % group != 0 || spec.hiddenSize() % group != 0) group /= 2;
        OmniQuantObjective objective = new OmniQuantObjective(HeapBlock.of(block), null, new IntQuantSpec(2, group, false), true, 16);
        boolean big = spec.hiddenSize() >= 4096;
        Timing t;
        // resident as in training: the weights stay where the backend computes; a step sends the windows
        try (io.blockquant.algo.omniquant.ResidentObjective r = objective.resident(be)) {
            long rows = (long) batch * seq;
            t = Timing.measure(big ? 0 : settings.warmups(), big ? 1 : settings.repeats(), () -> be.scratchValue(() ->
                    r.evaluate(be.fromFloats(x, rows, spec.hiddenSize()), be.fromFloats(target, rows, spec.hiddenSize()), batch, seq,
                            true, false).loss()));
        }
        double flop = 3 * BlockFlops.llamaForward(spec, batch, seq);
        double g = t.gflops(flop);
        report.row(s, name + " forward+backward (OmniQuant W2 g" + group + " step), " + batch + "×" + seq, String.format(Locale.ROOT, "%.1f GFLOP/s", g),
                String.format(Locale.ROOT, "%.3f s (%s), FLOPs = 3× forward, %.0f %% of the ceiling; includes LWC and its gradient",
                        t.medianSeconds(), t.runs() == 1 ? "one run" : "median of " + t.runs(), 100 * g / ceiling));
        report.put(key, g);
        report.put(key.replace("gflops", "seconds"), t.medianSeconds());
    }
}
