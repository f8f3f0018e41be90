package io.blockquant.bench;

import io.blockquant.algo.HessianAccumulator;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.llama.LlamaBlock;
import io.blockquant.tensor.ForwardOps;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The memory of calibrating one Llama-7B-shaped block: what an executor holds (the block's weights, one
 * partition of activations), what the driver holds (one Hessian per group), the measured peaks of heap and
 * resident set, and GPTQ's own working set computed from its arrays.
 */
public final class BlockMemory {

    private static final String SECTION = "5. memory while calibrating one 7B-shaped block";

    private final ForwardOps be;
    private final BenchSettings settings;
    private final BenchReport report;

    public BlockMemory(ForwardOps be, BenchSettings settings, BenchReport report) {
        this.be = be;
        this.settings = settings;
        this.report = report;
    }

    public void run() {
        String s = SECTION;
        CpuBlas.useThreads(settings.threads());
        int windowsPerTask = 8, seq = 2048 / settings.shrink();
        ModelSpec spec = RandomBlocks.llama7b(settings.shrink());
        MemoryProbe probe = MemoryProbe.start();
        long heapBefore = Runtime.getRuntime().totalMemory() - Runtime.getRuntime().freeMemory();
        long rssBefore = MemoryProbe.statusBytes("VmRSS:");
        LlamaBlock block = RandomBlocks.llama(spec, be, 10);
        // one partition of block inputs as an executor reads it (ActivationFiles: a float[] on the heap)
        float[] partition = new RandomBlocks.FastRandom(11).uniform((long) windowsPerTask * seq * spec.hiddenSize(), 1.0);
        // the driver's merged Hessians, one per group (q,k,v | o | gate,up | down), from one window of the partition
        List<double[]> hessians = new ArrayList<>();
        int sample = Math.min(seq, 256);
        float[] rows = Arrays.copyOf(partition, sample * spec.hiddenSize());
        for (int width : new int[] {spec.hiddenSize(), spec.hiddenSize(), spec.hiddenSize(), spec.intermediateSize()}) {
            HessianAccumulator acc = new HessianAccumulator(width);
            float[] in = width == spec.hiddenSize() ? rows : new RandomBlocks.FastRandom(12).uniform((long) sample * width, 1.0);
            acc.add(be.fromFloats(in, sample, width));
            hessians.add(acc.hessian());
        }
        // a forward over one window, as the Hessian and output jobs run the block
        be.scratchValue(() -> block.forward(be.fromFloats(Arrays.copyOf(partition, seq * spec.hiddenSize()), seq,
                spec.hiddenSize()), 1, seq).shape());
        MemoryProbe.Peaks p = probe.peaks();
        long weights = 0;
        for (var l : block.linears()) weights += 4L * l.weight().length();
        long hessianBytes = 0;
        for (double[] h : hessians) hessianBytes += 8L * h.length;
        report.row(s, "holds: fp block weights (off-heap)", BenchReport.megabytes(weights), "7 linears, float32");
        report.row(s, "holds: one partition of activations (heap)", BenchReport.megabytes(4L * partition.length),
                windowsPerTask + " windows × " + seq + " tokens × " + spec.hiddenSize());
        report.row(s, "holds: Hessians, one per group (driver heap)", BenchReport.megabytes(hessianBytes),
                "float64: 3 × " + spec.hiddenSize() + "² + 1 × " + spec.intermediateSize() + "²");
        report.row(s, "measured: peak heap", BenchReport.megabytes(p.heapBytes()), "heap in use before: " + BenchReport.megabytes(heapBefore)
                + " (sum of pool peaks: an upper bound)");
        report.row(s, "measured: peak RSS", BenchReport.megabytes(p.rssPeakBytes()), "RSS before: " + BenchReport.megabytes(rssBefore)
                + (p.rssPeakIsSinceStart() ? "; VmHWM not resettable: since start" : "; includes the forward's off-heap scores"));
        // GPTQ's own working set, read off GptqQuantizer at the down_proj shape (a full-size run takes about an hour)
        long n = spec.intermediateSize(), r = spec.hiddenSize();
        long gptqHeap = 8 * n * n * 2 + 4 * n * n * 2 + (4 + 4 + 8 + 4) * n * n + 4 * r * n * 3;
        report.row(s, "computed: GPTQ heap at down_proj " + r + "×" + n, BenchReport.megabytes(gptqHeap),
                "Hessian + its copy (f64), f32 copy + identity, the triangular solve's 2 f32 inputs + f64 result + f32 output, W/levels/codes; not measured");
        report.put("memory_block_weights_mb", weights / 1e6);
        report.put("memory_partition_mb", 4.0 * partition.length / 1e6);
        report.put("memory_hessians_mb", hessianBytes / 1e6);
        report.put("memory_heap_peak_mb", p.heapBytes() / 1e6);
        report.put("memory_rss_peak_mb", p.rssPeakBytes() / 1e6);
        report.put("memory_gptq_down_proj_heap_mb_computed", gptqHeap / 1e6);
        if (partition.length == 0 || hessians.isEmpty()) throw new IllegalStateException("unreachable: keeps the holdings alive");
    }
}
