package io.blockquant.schedule;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.CalibratedBlock;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.algo.InputRanges;
import io.blockquant.algo.StoredWeight;
import io.blockquant.schedule.QuantizeJob.Summary;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.StoreWriter;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.stream.IntStream;
import org.apache.hadoop.conf.Configuration;

/**
 * {@code quantize} in sequential mode, the papers' semantics: block i is calibrated on the outputs of the
 * already-quantized blocks 0..i-1. The calibration windows are split into partitions; each partition's
 * block inputs live as a file in the store's work area ({@link ActivationFiles}) and move from block to
 * block inside executors, never through the driver. Per block, for each true-sequential group of linear
 * layers ({@link BlockPlan}):
 * <ol>
 *   <li>one Spark job accumulates the group's input Hessian over the partitions (a sum, reduced on the
 *       driver), running each partition's block only as far as the group's input;</li>
 *   <li>one job quantizes the group's layers with GPTQ, a task per layer;</li>
 * </ol>
 * then one job runs the quantized block on every partition, writes the next block's inputs and measures
 * errors, and the driver commits the block to the store. RTN skips the Hessian jobs. On a cluster with GPUs
 * every block task holds one GPU and binds the tensor backend to it ({@link TaskDevices}).
 */
public final class SequentialQuantizeJob {

    private SequentialQuantizeJob() {}

    static Summary run(QuantizeJob.Run run) {
        Configuration hadoop = run.hadoop();
        StoreWriter store = run.store();
        CalibrationSet calib = run.calib();
        int blocks = run.model().spec().numLayers();
        ActivationFiles acts = new ActivationFiles(store.workDir().toString());
        // OmniQuant's targets come from a second, full-precision stream (the reference's fp_inps)
        ActivationFiles fpActs = new ActivationFiles(store.workDir() + "/fp");
        BlockFiles files = new BlockFiles(store.workDir().toString());
        boolean omni = run.settings().calibrator() instanceof BlockCalibrator.OnBlockTargets;

        List<Integer> committed = store.committedBlocks();
        int first = 0;
        while (committed.contains(first)) first++;
        BlockExecutor.Shared<CalibrationSet> windows = run.executor().share(calib);
        try {
            if (first > 0 && first < blocks && (!acts.isComplete(hadoop, first) || omni && !fpActs.isComplete(hadoop, first))) {
                throw new IllegalStateException(store.root() + ": blocks 0.." + (first - 1)
                        + " are committed but the inputs of block " + first + " are missing from "
                        + store.workDir() + "; delete the store and start again");
            }
            if (first == 0) {
                run.log().printf("embedding %d calibration windows of %d tokens in %d tasks%n", calib.size(), calib.seqlen(),
                        run.parts().size());
                ActivationFiles[] streams = omni ? new ActivationFiles[] {acts, fpActs} : new ActivationFiles[] {acts};
                QuantizeJob.embed(run.executor(), run.model(), windows, run.parts(), run.settings().windowsPerTask(), streams);
            }
            // blocks folded from --omni-params files, listed once for the run
            Set<Integer> learned = omni ? OmniQuantParameterFiles.blocksIn(hadoop, run.req().omniParams(), blocks) : Set.of();
            Steps steps = new Steps(run.executor(), run.model(), run.plan(), run.settings(), run.parts(), calib, acts, fpActs, files,
                    run.req().omniParams(), learned, run.log());
            // spreading a block over tasks pays where several CPU slots share its Hessians; on a GPU one task does it
            // all with the inputs kept on the device, and nothing n×n crosses to the heap or the work area
            boolean oneTask = !omni && (run.executor().slots() == 1 || run.executor().computesOnGpus());
            if (oneTask) {
                run.log().printf("each block in one task (%s): its inputs read once, Hessians and column loops where it computes%n",
                        run.executor().computesOnGpus() ? "block tasks compute on GPUs" : "one task slot");
            }
            BlockLoop.Step step = oneTask ? steps::calibrateInOneTask : steps::calibrate;
            return run.finish(run.loop(IntStream.range(first, blocks).boxed().toList(), 1, files, omni || oneTask, step, b -> {
                acts.deleteBlock(hadoop, b);
                if (omni) fpActs.deleteBlock(hadoop, b);
            }));
        } catch (IOException e) {
            throw new UncheckedIOException(store.workDir() + ": " + e.getMessage(), e);
        } finally {
            windows.release();
        }
    }

    /**
     * Sequential mode's step: one block calibrated on the quantized prefix's outputs, spread over tasks per
     * calibration partition and per layer; its outputs become the next block's inputs.
     */
    private record Steps(BlockExecutor executor, ModelRef model, BlockPlan plan, QuantizeSettings s, List<Integer> parts,
                         CalibrationSet calib, ActivationFiles acts, ActivationFiles fpActs, BlockFiles files, String omniParams,
                         Set<Integer> learned, PrintStream log) {

        /** The block whole in one task ({@link BlockTask}); its outputs become the next block's inputs. */
        BlockLoop.Outcome calibrateInOneTask(int block) throws IOException {
            int blocks = model.spec().numLayers(), seq = calib.seqlen(), windows = calib.size();
            boolean last = block == blocks - 1;
            ModelRef model = this.model;
            BlockFiles files = this.files;
            ActivationFiles acts = this.acts;
            QuantizeSettings s = this.s;
            BlockPlan plan = this.plan;
            List<Integer> parts = this.parts;
            executor.describe("calibrate block " + block);
            // on the executor that ran the block before, where its outputs, this block's inputs, wait on the GPU
            BlockLoop.Outcome o = executor.mapNear(List.of(block), block, block - 1, (b, be, conf) -> {
                DecoderBlock fp = ExecutorBlocks.block(model, b, be, conf);
                ExecutorBlocks.readAhead(model, b + 1, be, conf); // most likely this executor's next block
                return BlockTask.calibrate(b, fp, acts, last ? null : acts, files, conf, parts, plan, s, null, seq, windows, blocks, null);
            }).get(0);
            if (!last) acts.markComplete(executor.conf(), block + 1);
            return o;
        }

        BlockLoop.Outcome calibrate(int block) throws IOException {
            long t0 = System.nanoTime();
            Configuration hadoop = executor.conf();
            int blocks = model.spec().numLayers(), seq = calib.seqlen();
            BlockCalibrator calibrator = s.calibrator();
            boolean omni = calibrator instanceof BlockCalibrator.OnBlockTargets;
            boolean hessians = calibrator instanceof BlockCalibrator.OnGroupHessians;
            Map<String, Double> losses = new HashMap<>();
            long tokens = 0;
            if (omni) trainOmniQuant(block);
            List<String> quantized = new ArrayList<>();
            for (List<String> group : omni ? List.<List<String>>of() : hessians ? plan.groups() : List.of(plan.allLinears())) {
                tokens = hessians ? hessian(block, group.get(0), List.copyOf(quantized)) : 0;
                String input = group.get(0); // the layers of a group share their input, so its Hessian
                ModelRef model = this.model;
                BlockFiles files = this.files;
                List<Double> groupLosses = executor.map(group, block, (module, be, conf) -> {
                    DecoderBlock fp = ExecutorBlocks.block(model, block, be, conf);
                    Tensor w = BlockWork.find(fp, module).weight();
                    StoredWeight q = calibrator instanceof BlockCalibrator.OnGroupHessians g
                            ? g.quantize(w, files.preparedHessian(conf, block, input))
                            : ((BlockCalibrator.OnWeights) calibrator).quantize(w);
                    files.writeLayer(conf, block, module, q);
                    return q.loss();
                });
                for (int k = 0; k < group.size(); k++) {
                    quantized.add(group.get(k));
                    if (hessians) losses.put(group.get(k), groupLosses.get(k));
                }
                if (hessians) {
                    log.printf(Locale.ROOT, "  block %d/%d: %s quantized (%s on %d tokens)%n", block + 1, blocks,
                            String.join(", ", group), s.method().toUpperCase(Locale.ROOT), tokens);
                }
            }
            if (hessians) files.deleteHessian(hadoop, block);

            // the quantized block on every partition: the next block's inputs, and the errors
            boolean last = block == blocks - 1;
            boolean perLayer = !(calibrator instanceof BlockCalibrator.OnBlockTargets t) || t.keepsLayerInputs();
            List<String> linears = plan.allLinears();
            ModelRef model = this.model;
            BlockFiles files = this.files;
            ActivationFiles acts = this.acts;
            QuantizeSettings s = this.s;
            BlockStats stats = executor.map(parts, block, (p, be, conf) -> {
                DecoderBlock fp = ExecutorBlocks.block(model, block, be, conf);
                DecoderBlock q = BlockWork.withActivations(calibratedBlock(fp, model.spec(), block, omni, files, conf, linears, be), s);
                int[] shape = new int[2];
                float[] x = acts.read(conf, block, p, shape);
                BlockWork.Outputs out = BlockWork.outputs(fp, q, x, shape[0] / seq, seq, perLayer);
                if (!last) acts.write(conf, block + 1, p, out.hidden(), shape[0], shape[1]);
                return out.stats();
            }).stream().reduce(BlockStats::merge).orElseThrow();
            if (!last) acts.markComplete(hadoop, block + 1);
            return new BlockLoop.Outcome(block, stats, losses, tokens, (System.nanoTime() - t0) / 1e9);
        }

        /**
         * GPTQ's Hessian of {@code input}'s input, reduced and prepared on executors: one job writes a partial
         * sum per task slot (the block run as far as that layer, with the group's earlier layers {@code quantized}
         * already in place), one task sums them in order, damps and factors (LAPACK or cuSOLVER
         * through the backend) and leaves the factor in the work area for the group's layer tasks. Returns the
         * number of tokens; the driver never holds an n×n matrix.
         */
        private long hessian(int block, String input, List<String> quantized) {
            // one partial sum per task slot, not per partition: the work area holds slots × n² × 8 bytes (a
            // Llama-3-8B down_proj: 1.6 GB each), whatever the calibration size; a task folds its partitions in order
            int tasks = Math.max(1, Math.min(parts.size(), executor.slots()));
            List<Integer> slices = IntStream.range(0, tasks).boxed().toList();
            ModelRef model = this.model;
            BlockFiles files = this.files;
            ActivationFiles acts = this.acts;
            QuantizeSettings s = this.s;
            List<Integer> parts = this.parts;
            int seq = calib.seqlen();
            long tokens = executor.map(slices, block, (t, be, conf) -> {
                DecoderBlock fp = ExecutorBlocks.block(model, block, be, conf);
                DecoderBlock current = BlockWork.withActivations(
                        BlockWork.withWeights(fp, BlockWork.dequantized(files.readLayers(conf, block, quantized))), s);
                HessianAccumulator sum = null;
                for (int p : parts.subList(t * parts.size() / tasks, (t + 1) * parts.size() / tasks)) {
                    int[] shape = new int[2];
                    float[] x = acts.read(conf, block, p, shape);
                    HessianAccumulator h = BlockWork.hessian(current, input, x, shape[0] / seq, seq);
                    if (sum == null) sum = h;
                    else sum.add(h);
                }
                files.writePartialHessian(conf, block, input, t, sum);
                return sum.tokens();
            }).stream().mapToLong(Long::longValue).sum();
            executor.map(List.of(input), block, (m, be, conf) -> {
                files.prepareHessian(conf, block, m, slices, h -> BlockWork.prepare(s.calibrator(), be, h, block, m));
                return null;
            });
            return tokens;
        }

        /**
         * OmniQuant on block {@code block}: the full-precision block's outputs on the full-precision stream are
         * both the training targets and the next block's full-precision inputs; then one task trains LWC/LET on
         * every calibration window (the reference trains a block on one GPU with all its samples) and leaves
         * the folded, quantized block's rows in the work area, for the output pass and the commit.
         */
        private void trainOmniQuant(int block) throws IOException {
            int blocks = model.spec().numLayers(), seq = calib.seqlen(), windows = calib.size();
            // after the last block that trains (the rest fold from --omni-params files), the full-precision stream
            // feeds nothing, so it is not computed
            int lastTrained = blocks - 1;
            while (lastTrained >= 0 && learned.contains(lastTrained)) lastTrained--;
            // the same passes take the input ranges that LET or SmoothQuant start from (the reference's act_scales come
            // from the full-precision model, not from the quantized prefix this block's inputs are)
            BlockCalibrator.OnBlockTargets ranged = learned.contains(block) ? null : (BlockCalibrator.OnBlockTargets) s.calibrator();
            InputRanges fpRanges = block <= lastTrained
                    ? QuantizeJob.fullPrecisionPass(executor, model, block, parts, fpActs, seq, ranged) : null;
            long t0 = System.nanoTime();
            ModelRef model = this.model;
            BlockFiles files = this.files;
            ActivationFiles acts = this.acts, fpActs = this.fpActs;
            QuantizeSettings s = this.s;
            List<Integer> parts = this.parts;
            String paramsDir = omniParams;
            executor.map(List.of(block), block, (b, be, conf) -> {
                DecoderBlock fp = ExecutorBlocks.block(model, b, be, conf);
                files.writeRows(conf, b, BlockRecords.of(b, omniQuantBlock(fp, b, acts, fpActs, fpRanges, parts, conf, s, paramsDir, seq, windows,
                        blocks)));
                return null;
            });
            log.printf(Locale.ROOT, "  block %d/%d: %s %s in %.1f s (%s)%n", block + 1, blocks, s.method(),
                    learned.contains(block) ? "folded from learned parameters" : "trained", (System.nanoTime() - t0) / 1e9, s.label());
        }
    }

    /** Block {@code block} as calibrated: its quantized layers (or OmniQuant's folded rows) read from the work area. */
    static DecoderBlock calibratedBlock(DecoderBlock fp, ModelSpec spec, int block, boolean omni, BlockFiles files, Configuration conf,
                                        List<String> linears, TensorBackend be) throws IOException {
        if (!omni) return BlockWork.withWeights(fp, BlockWork.dequantized(files.readLayers(conf, block, linears)));
        Map<String, float[]> values = new HashMap<>();
        Map<String, long[]> shapes = new HashMap<>();
        BlockRecords.dequantize(files.readRows(conf, block), "", values, shapes);
        return BlockWork.rebuild(spec, block, values, shapes, be);
    }

    /**
     * One block's OmniQuant: folded from {@code paramsDir}'s learned parameters when that block's file exists,
     * else trained on the block's inputs (the quantized prefix's outputs) against the full-precision targets from
     * {@code fpRanges} (the full-precision stream's input ranges; null: the inputs'), and its parameters written
     * there when a folder is given.
     */
    static CalibratedBlock omniQuantBlock(DecoderBlock fp, int b, ActivationFiles acts, ActivationFiles fpActs, InputRanges fpRanges,
                                          List<Integer> parts, Configuration conf, QuantizeSettings s, String paramsDir, int seq, int windows, int blocks)
            throws IOException {
        BlockCalibrator.OnBlockTargets calibrator = (BlockCalibrator.OnBlockTargets) s.calibrator();
        Map<String, float[]> learned = paramsDir == null ? null : OmniQuantParameterFiles.read(conf, paramsDir, b);
        if (learned != null) {
            String file = OmniQuantParameterFiles.file(paramsDir, b).toString();
            System.err.printf("    block %d/%d omniquant: learned parameters from %s, no training%n", b + 1, blocks, file);
            return calibrator.restore(fp, learned, file);
        }
        float[][] inputs = QuantizeJob.windows(acts, conf, b, parts, seq), targets = QuantizeJob.windows(fpActs, conf, b + 1, parts, seq);
        if (inputs.length != windows) throw new IllegalStateException("block " + b + ": " + inputs.length + " windows read, " + windows + " drawn");
        BlockCalibrator.Learned trained = calibrator.train(fp, inputs, targets, fpRanges, seq, s.seed() + b,
                msg -> System.err.printf("    block %d/%d omniquant: %s%n", b + 1, blocks, msg));
        if (paramsDir != null) OmniQuantParameterFiles.write(conf, paramsDir, b, trained.parameters());
        return trained.block();
    }
}
