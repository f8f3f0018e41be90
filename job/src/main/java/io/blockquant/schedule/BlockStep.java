package io.blockquant.schedule;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.CalibratedBlock;
import io.blockquant.algo.GptqQuantizer;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.algo.StoredWeight;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.Tensor;
import java.io.IOException;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One block calibrated layer by layer inside one JVM, on inputs read partition by partition (so the JVM holds one
 * partition at a time): the step of parallel mode's block task. Per group of layers ({@link BlockPlan#groups} when
 * the calibrator needs Hessians, else all at once), the group's input statistics on the block with the earlier
 * groups already quantized, then each layer's stored weight; then the errors of the quantized block against the
 * full-precision one on the same inputs.
 */
final class BlockStep {

    private BlockStep() {}

    /** A block's calibration inputs, {@code [windows·seq, hidden]} per partition, read in partition order. */
    interface Inputs {
        int partitions();

        /** Partition {@code p}'s values; {rows, cols} in {@code shape}. */
        float[] read(int p, int[] shape) throws IOException;
    }

    /**
     * The calibrated block; {@code losses}: the calibrator's loss per layer (Hessian methods), {@code tokens}: the
     * calibration tokens of the last group's Hessian (0 without).
     */
    record Layers(CalibratedBlock block, Map<String, Double> losses, long tokens) {}

    /** RTN or GPTQ on {@code fp} ({@code calibrator} is one of the layer-wise kinds). */
    static Layers layers(DecoderBlock fp, BlockCalibrator calibrator, BlockPlan plan, QuantizeSettings s, Inputs inputs,
                         int seq) throws IOException {
        Map<String, StoredWeight> layers = new LinkedHashMap<>();
        Map<String, float[]> done = new HashMap<>();
        Map<String, Double> losses = new HashMap<>();
        long tokens = 0;
        boolean hessians = calibrator instanceof BlockCalibrator.OnGroupHessians;
        for (List<String> group : hessians ? plan.groups() : List.of(plan.allLinears())) {
            GptqQuantizer.PreparedHessian hessian = null;
            HessianAccumulator acc = null;
            if (hessians) {
                DecoderBlock current = BlockWork.withActivations(BlockWork.withWeights(fp, done), s);
                for (int p = 0; p < inputs.partitions(); p++) {
                    int[] shape = new int[2];
                    float[] x = inputs.read(p, shape);
                    HessianAccumulator part = BlockWork.hessian(current, group.get(0), x, shape[0] / seq, seq);
                    acc = acc == null ? part : acc.merge(part);
                }
                tokens = acc.tokens();
            }
            if (calibrator instanceof BlockCalibrator.OnGroupHessians g) {
                hessian = g.prepare(fp.linears().get(0).weight().backend(), acc.takeHessian());
            }
            for (String module : group) {
                Tensor w = BlockWork.find(fp, module).weight();
                StoredWeight q = calibrator instanceof BlockCalibrator.OnGroupHessians g ? g.quantize(w, hessian)
                        : ((BlockCalibrator.OnWeights) calibrator).quantize(w);
                layers.put(module, q);
                done.put(module, q.dequantize());
                if (hessians) losses.put(module, q.loss());
            }
        }
        return new Layers(new CalibratedBlock(BlockWork.withWeights(fp, done), layers), losses, tokens);
    }

    /** The calibrated block (with the recipe's activation quantization) against {@code fp} on every partition: the error sums. */
    static BlockStats errors(DecoderBlock fp, CalibratedBlock calibrated, QuantizeSettings s, Inputs inputs, int seq)
            throws IOException {
        DecoderBlock quantized = BlockWork.withActivations(calibrated.block(), s);
        boolean perLayer = !(s.calibrator() instanceof BlockCalibrator.OnBlockTargets t) || t.keepsLayerInputs();
        BlockStats stats = new BlockStats();
        for (int p = 0; p < inputs.partitions(); p++) {
            int[] shape = new int[2];
            float[] x = inputs.read(p, shape);
            BlockWork.Outputs o = BlockWork.outputs(fp, quantized, x, shape[0] / seq, seq, perLayer);
            stats = stats.merge(o.stats());
        }
        return stats;
    }
}
