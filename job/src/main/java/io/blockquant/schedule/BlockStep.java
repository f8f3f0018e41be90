package io.blockquant.schedule;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.CalibratedBlock;
import io.blockquant.algo.GptqQuantizer;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.algo.QuantizedLayer;
import io.blockquant.algo.StoredWeight;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.GramSum;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One block calibrated layer by layer inside one task ({@link BlockTask}: parallel mode's block task, sequential mode's
 * on GPUs). Per group of layers ({@link BlockPlan#groups} when the calibrator needs Hessians, else all at once), the
 * group's input statistics on the block with the earlier groups already quantized, then each layer's stored weight;
 * then the errors of the quantized block against the full-precision one on the same inputs.
 */
final class BlockStep {

    private BlockStep() {}

    /** A block's calibration inputs, {@code [windows·seq, hidden]} per partition, read in partition order. */
    public interface Inputs {
        int partitions();

        /** Partition {@code p}'s values; {rows, cols} in {@code shape}. */
        float[] read(int p, int[] shape) throws IOException;
    }

    /**
     * Receives the quantized block's outputs of each partition (the next block's inputs), in partition order: as a
     * tensor of the block's backend where the inputs are kept there ({@code hidden} null), else on the heap
     * ({@code kept} null). A kept tensor's computing has finished, and it is the receiver's to close.
     */
    interface Outputs {
        void accept(int p, float[] hidden, int rows, int cols, Tensor kept) throws IOException;
    }

    /** What a pass does with one partition: its rows {@code [windows·seq, hidden]} as a tensor of the block's backend. */
    @FunctionalInterface
    interface PartitionWork<T> {
        T apply(Tensor x, int rows);
    }

    /**
     * A block's inputs as tensors of its backend for the passes of one block task. On a device each partition is
     * read and uploaded once and kept for every pass (each group's Hessian and the output pass read them all: a
     * Llama-3-8B's 128 × 2048 windows are 4 GiB, and reading them anew per pass cost more than the passes); on the
     * CPU each pass reads them anew, so the JVM holds one partition at a time.
     */
    static final class OnBackend implements AutoCloseable {
        private final Inputs inputs;
        private final TensorBackend be;
        private final Tensor[] kept;
        private final int[] rows;
        private PartitionReads ahead;

        /**
         * {@code resident}: keep the partitions once read (a device backend); {@code onDevice}: the partitions already
         * there (kept by the task that computed them), or null.
         */
        OnBackend(Inputs inputs, TensorBackend be, boolean resident, Tensor[] onDevice) {
            this.inputs = inputs;
            this.be = be;
            this.kept = onDevice != null ? onDevice : resident ? new Tensor[inputs.partitions()] : null;
            this.rows = new int[inputs.partitions()];
            if (onDevice != null) for (int p = 0; p < rows.length; p++) rows[p] = Math.toIntExact(onDevice[p].size(0));
        }

        int partitions() {
            return inputs.partitions();
        }

        /** Whether the partitions stay where the block computes (and so should the outputs that feed the next block). */
        boolean resident() {
            return kept != null;
        }

        <T> T apply(int p, PartitionWork<T> work) throws IOException {
            int[] shape = new int[2];
            if (kept == null) {
                float[] x = inputs.read(p, shape);
                return be.scratchValue(() -> work.apply(be.fromFloats(x, shape[0], shape[1]), shape[0]));
            }
            if (kept[p] == null) {
                float[] x = readAhead(p, shape);
                kept[p] = be.fromFloats(x, shape[0], shape[1]);
                rows[p] = shape[0];
            }
            return work.apply(kept[p], rows[p]);
        }

        /**
         * Partition {@code p} of a first pass that reads the files: every partition not yet kept is read ahead on a few
         * threads while the pass computes.
         */
        private float[] readAhead(int p, int[] shape) throws IOException {
            if (ahead == null) ahead = new PartitionReads(inputs, p, "block inputs");
            return ahead.has(p) ? ahead.take(p, shape) : inputs.read(p, shape);
        }

        @Override
        public void close() {
            if (ahead != null) ahead.close();
            if (kept == null) return;
            for (int p = 0; p < kept.length; p++) {
                if (kept[p] != null) kept[p].close();
                kept[p] = null;
            }
        }
    }

    /**
     * The calibrated block; {@code losses}: the calibrator's loss per layer (Hessian methods), {@code tokens}: the
     * calibration tokens of the last group's Hessian (0 without), {@code hessianSeconds}: time in the passes that sum the
     * Hessians, {@code calibrationSeconds}: time in the calibrator (factors and column loops); {@code layerErrors}: each
     * layer's output error from its group's Hessian (Hessian methods), else null.
     */
    record Layers(CalibratedBlock block, Map<String, Double> losses, long tokens, double hessianSeconds, double calibrationSeconds,
                  BlockStats layerErrors) {}

    /** RTN or GPTQ on {@code fp} ({@code calibrator} is one of the layer-wise kinds). */
    static Layers layers(int block, DecoderBlock fp, BlockCalibrator calibrator, BlockPlan plan, QuantizeSettings s, OnBackend inputs,
                         int seq) throws IOException {
        Map<String, StoredWeight> layers = new LinkedHashMap<>();
        Map<String, Tensor> done = new HashMap<>();
        Map<String, Double> losses = new HashMap<>();
        long tokens = 0;
        double hessianSeconds = 0, seconds = 0;
        boolean hessians = calibrator instanceof BlockCalibrator.OnGroupHessians;
        BlockStats errors = hessians ? new BlockStats() : null;
        TensorBackend be = fp.linears().get(0).weight().backend();
        for (List<String> group : hessians ? plan.groups() : List.of(plan.allLinears())) {
            long t0 = System.nanoTime();
            GptqQuantizer.PreparedHessian hessian = null;
            GramSum sum = null;
            if (hessians) {
                DecoderBlock current = BlockWork.withActivations(BlockWork.withWeightTensors(fp, done), s);
                GramSum acc = HessianAccumulator.on(be, (int) BlockWork.find(fp, group.get(0)).inFeatures());
                sum = acc;
                for (int p = 0; p < inputs.partitions(); p++) {
                    inputs.apply(p, (x, rows) -> {
                        BlockWork.addHessian(current, group.get(0), x, rows / seq, seq, acc);
                        return null;
                    });
                }
                tokens = sum.rows();
                be.synchronize();
            }
            long t1 = System.nanoTime();
            if (hessians) hessian = BlockWork.prepare(calibrator, be, sum, block, group.get(0));
            for (String module : group) {
                Tensor w = BlockWork.find(fp, module).weight();
                QuantizedLayer q = calibrator instanceof BlockCalibrator.OnGroupHessians g ? g.quantizeLayer(w, hessian)
                        : QuantizedLayer.of(((BlockCalibrator.OnWeights) calibrator).quantize(w), w);
                layers.put(module, q.stored());
                done.put(module, q.weight());
                if (hessians) losses.put(module, q.stored().loss());
            }
            if (hessian != null) hessian.release();
            if (hessians) addLayerErrors(fp, group, done, sum, errors, be);
            if (sum != null) sum.close();
            be.synchronize();
            hessianSeconds += (t1 - t0) / 1e9;
            seconds += (System.nanoTime() - t1) / 1e9;
        }
        return new Layers(new CalibratedBlock(BlockWork.withWeightTensors(fp, done), layers), losses, tokens, hessianSeconds, seconds,
                errors);
    }

    /**
     * Each layer of {@code group}'s ‖X(W − Ŵ)ᵀ‖² and ‖XWᵀ‖² from the group's {@code Σ xᵀx}, in one call (a heap sum is
     * rounded to float32 once): its rows are exactly the layers' inputs in the calibrated block (earlier groups
     * quantized, the recipe's activations), so the output pass need not run each layer twice more over every token.
     */
    private static void addLayerErrors(DecoderBlock fp, List<String> group, Map<String, Tensor> quantized, GramSum sum,
                                       BlockStats errors, TensorBackend be) {
        double[] f = be.scratchValue(() -> {
            Tensor[] forms = new Tensor[2 * group.size()];
            for (int k = 0; k < group.size(); k++) {
                Tensor w = BlockWork.find(fp, group.get(k)).weight();
                forms[2 * k] = be.sub(w, quantized.get(group.get(k)));
                forms[2 * k + 1] = w;
            }
            return sum.quadraticForms(forms);
        });
        for (int k = 0; k < group.size(); k++) errors.addLayer(group.get(k), f[2 * k], f[2 * k + 1], sum.rows());
    }

    /**
     * The calibrated block (with the recipe's activation quantization) against {@code fp} on every partition: the
     * error sums, and each partition's outputs to {@code next} (null: not needed). {@code layerErrors}: the layers'
     * errors already known ({@link Layers#layerErrors}), else null and the pass measures them.
     */
    static BlockStats errors(DecoderBlock fp, CalibratedBlock calibrated, QuantizeSettings s, OnBackend inputs, int seq,
                             Outputs next, BlockStats layerErrors) throws IOException {
        DecoderBlock quantized = BlockWork.withActivations(calibrated.block(), s);
        boolean perLayer = layerErrors == null && (!(s.calibrator() instanceof BlockCalibrator.OnBlockTargets t) || t.keepsLayerInputs());
        BlockWork.OutputsTo to = next == null ? BlockWork.OutputsTo.NOWHERE
                : inputs.resident() ? BlockWork.OutputsTo.BACKEND : BlockWork.OutputsTo.HEAP;
        BlockStats stats = layerErrors != null ? layerErrors : new BlockStats();
        for (int p = 0; p < inputs.partitions(); p++) {
            int[] shape = new int[2];
            BlockWork.Outputs o = inputs.apply(p, (x, rows) -> {
                shape[0] = rows;
                shape[1] = (int) x.size(1);
                return BlockWork.outputs(fp, quantized, x, rows / seq, seq, perLayer, to);
            });
            stats = stats.merge(o.stats());
            if (next != null) next.accept(p, o.hidden(), shape[0], shape[1], o.kept());
        }
        return stats;
    }
}
