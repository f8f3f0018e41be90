package io.blockquant.algo;

import io.blockquant.algo.omniquant.AdamW;
import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.algo.omniquant.EquivalentTransform;
import io.blockquant.algo.omniquant.HeapBlock;
import io.blockquant.algo.omniquant.OmniQuantObjective;
import io.blockquant.algo.omniquant.ResidentObjective;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;

/**
 * OmniQuant (Shao et al., 2023) for one block, as the reference's {@code quantize/omniquant.py}: LET started
 * from the input ranges of the full-precision model on the calibration windows (the reference's act_scales and
 * act_shifts, {@link InputRanges}), LWC from γ = β = 4, then {@code epochs}
 * passes of AdamW over the windows (a seeded shuffle per epoch; the reference walks them in order) on the
 * MSE between the quantized block's output and the full-precision target, and finally the fold. As the
 * pipeline's calibrator it needs the block's inputs and the full-precision targets; training is seeded per block.
 */
public record OmniQuantCalibrator(OmniQuantConfig config) implements BlockCalibrator.OnBlockTargets {

    @Override
    public Learned train(DecoderBlock fp, float[][] inputs, float[][] targets, InputRanges fpRanges, int seq, long seed,
                         Consumer<String> progress) {
        OmniQuantObjective objective = train(fp, inputs, targets, fpRanges, seq, config, seed, progress);
        return new Learned(objective.learned(), objective.fold(fp.linears().get(0).weight().backend()));
    }

    /**
     * LET's starts read the inputs of the query projection, the MLP's first linear and the output projection, and
     * with {@code --let-down} the down projection's.
     */
    @Override
    public List<String> rangedInputs(DecoderBlock fp) {
        if (!config.let()) return List.of();
        List<String> names = new java.util.ArrayList<>(List.of(HeapBlock.name(fp, Proj.Q), HeapBlock.name(fp, Proj.O)));
        if (fp.mlpNorm() != null) names.add(HeapBlock.name(fp, Proj.UP));
        if (config.letDown()) names.add(HeapBlock.name(fp, Proj.DOWN));
        return names;
    }

    @Override
    public CalibratedBlock restore(DecoderBlock fp, java.util.Map<String, float[]> parameters, String source) {
        return restore(fp, config, parameters, source).fold(fp.linears().get(0).weight().backend());
    }

    @Override
    public void check(DecoderBlock fp, java.util.Map<String, float[]> parameters, String source) {
        restore(fp, config, parameters, source);
    }

    @Override
    public boolean keepsLayerInputs() {
        return !config.let();
    }

    /**
     * @param inputs  the block's calibration inputs, one {@code [seq, hidden]} row-major array per window
     * @param targets the full-precision block's outputs for them, same shapes
     */
    public static CalibratedBlock calibrate(DecoderBlock fpBlock, float[][] inputs, float[][] targets, int seq,
                                            OmniQuantConfig cfg, long seed, Consumer<String> progress) {
        TensorBackend be = fpBlock.linears().get(0).weight().backend();
        return train(fpBlock, inputs, targets, null, seq, cfg, seed, progress).fold(be);
    }

    /**
     * The training alone: the objective with its learned LWC and LET parameters, before the fold. {@link
     * OmniQuantObjective#fold} turns it into the stored block; {@link OmniQuantObjective#transformedFullPrecision}
     * into the same block with LET folded in but no quantization (the check that LET keeps the function).
     * {@code fpRanges}: the input ranges of {@link #rangedInputs} on the full-precision stream, LET's start; null
     * takes them from {@code inputs} (right when they are that stream).
     */
    public static OmniQuantObjective train(DecoderBlock fpBlock, float[][] inputs, float[][] targets, InputRanges fpRanges,
                                           int seq, OmniQuantConfig cfg, long seed, Consumer<String> progress) {
        TensorBackend be = fpBlock.linears().get(0).weight().backend();
        HeapBlock fp = HeapBlock.of(fpBlock);
        int hidden = fp.hidden(), nsamples = inputs.length;
        if (targets.length != nsamples) {
            throw new IllegalArgumentException("OmniQuant: " + nsamples + " input windows but " + targets.length + " target windows");
        }
        for (int w = 0; w < nsamples; w++) {
            if (inputs[w].length != (long) seq * hidden || targets[w].length != (long) seq * hidden) {
                throw new IllegalArgumentException("OmniQuant: window " + w + "'s inputs/targets must hold " + seq + "·" + hidden
                        + " values, got " + inputs[w].length + " and " + targets[w].length);
            }
        }
        EquivalentTransform let = transform(fp, cfg);
        if (let != null) initialize(let, fp, new OmniQuantCalibrator(cfg).rangesOr(fpRanges, fpBlock, inputs, seq), cfg);
        float[][] goal = cfg.augLoss() ? augmentedTargets(fpBlock, inputs, targets, seq) : targets;
        OmniQuantObjective objective = new OmniQuantObjective(fp, let, cfg.weightSpec(), cfg.lwc(), cfg.activations());

        int batch = Math.min(cfg.batchSize(), nsamples);
        int steps = nsamples / batch;                    // like the reference: nsamples // batch_size steps
        Random rnd = new Random(seed);
        int[] order = new int[nsamples];
        for (int i = 0; i < nsamples; i++) order[i] = i;
        double stepFlops = trainingStepFlops(fp, batch, seq);
        // weights, learnable vectors, gradients and AdamW's moments stay on the backend for the whole block, and on a
        // GPU with room the windows too: a step takes back only the loss
        try (ResidentObjective resident = objective.resident(be);
             AdamW opt = resident.optimizer(cfg.lwc(), cfg.lwcLr(), cfg.letLr(), cfg.weightDecay());
             DeviceWindows onDevice = DeviceWindows.upload(be, inputs, goal, seq, hidden)) {
            long rows = (long) batch * seq;
            for (int epoch = 0; epoch < cfg.epochs(); epoch++) {
                shuffle(order, rnd);
                double lossSum = 0;
                long epochStart = System.nanoTime();
                for (int s = 0; s < steps; s++) {
                    int[] ws = java.util.Arrays.copyOfRange(order, s * batch, (s + 1) * batch);
                    double loss = be.scratchValue(() -> onDevice != null
                            ? resident.step(onDevice.inputs(ws), onDevice.targets(ws), batch, seq, opt)
                            : resident.step(be.fromFloats(BlockCalibrator.rows(inputs, ws), rows, hidden),
                                    be.fromFloats(BlockCalibrator.rows(goal, ws), rows, hidden), batch, seq, opt));
                    if (!Double.isFinite(loss)) throw new ArithmeticException("OmniQuant: loss is " + loss + " in epoch " + epoch);
                    lossSum += loss;
                }
                double seconds = (System.nanoTime() - epochStart) / 1e9;
                if (progress != null) progress.accept(String.format(java.util.Locale.ROOT, "epoch %d loss %.6g, %.1f s, %.2f ms a step, %.1f GFLOP/s",
                        epoch, lossSum / steps, seconds, 1e3 * seconds / steps, steps * stepFlops / seconds / 1e9));
            }
            resident.download();
        }
        return objective;
    }

    /**
     * The reference's {@code --aug_loss} adds to the loss ‖o − t‖² the distance ‖o − f(x)‖² to the full-precision
     * block f on the quantized inputs x. Their sum is 2‖o − (t + f(x))/2‖² plus a constant, so training against the
     * mean target is the same training (AdamW does not see the factor 2; the printed loss is the mean target's).
     * In place, returning {@code targets}: a second set of a 70B block's targets would be another 8.6 GB of heap.
     */
    static float[][] augmentedTargets(DecoderBlock fpBlock, float[][] inputs, float[][] targets, int seq) {
        TensorBackend be = fpBlock.linears().get(0).weight().backend();
        int hidden = inputs[0].length / seq;
        for (int w = 0; w < inputs.length; w++) {
            float[] x = inputs[w], t = targets[w];
            float[] fx = be.scratchValue(() -> fpBlock.forward(be.fromFloats(x, seq, hidden), 1, seq).toFloats());
            for (int i = 0; i < fx.length; i++) t[i] = (t[i] + fx[i]) * 0.5f;
        }
        return targets;
    }

    /**
     * The block's windows in device memory for its whole training, so that a step moves nothing across the bus
     * (two 32 MiB windows a step at 8B were a quarter of its time); null on the CPU, or where the windows would take
     * more than half the free device memory or do not fit (the steps then upload theirs; all windows take 2 × 4 GiB
     * at 8B, 2 × 8.6 GB at 70B).
     */
    record DeviceWindows(TensorBackend be, Tensor[] in, Tensor[] target, int seq, int hidden) implements AutoCloseable {

        static DeviceWindows upload(TensorBackend be, float[][] inputs, float[][] targets, int seq, int hidden) {
            long bytes = 2L * inputs.length * seq * hidden * Float.BYTES;
            if (!be.onDevice() || bytes > be.freeDeviceMemory() / 2) return null;
            return of(be, inputs, targets, seq, hidden);
        }

        /** All windows on {@code be}, whatever its memory; null when they do not fit. */
        static DeviceWindows of(TensorBackend be, float[][] inputs, float[][] targets, int seq, int hidden) {
            Tensor[] in = new Tensor[inputs.length], target = new Tensor[inputs.length];
            DeviceWindows d = new DeviceWindows(be, in, target, seq, hidden);
            try {
                for (int w = 0; w < inputs.length; w++) {
                    in[w] = be.fromFloats(inputs[w], seq, hidden);
                    target[w] = be.fromFloats(targets[w], seq, hidden);
                }
                return d;
            } catch (IllegalStateException outOfMemory) {
                d.close(); // the backend's out-of-memory error: the steps upload their windows instead
                return null;
            }
        }

        Tensor inputs(int[] windows) {
            return batch(in, windows);
        }

        Tensor targets(int[] windows) {
            return batch(target, windows);
        }

        /** One window as it is; several as one [windows·seq, hidden] tensor (a row-vector concatenation is the flat one). */
        private Tensor batch(Tensor[] all, int[] windows) {
            if (windows.length == 1) return all[windows[0]];
            Tensor[] flat = new Tensor[windows.length];
            for (int i = 0; i < windows.length; i++) flat[i] = be.reshape(all[windows[i]], 1, (long) seq * hidden);
            return be.reshape(be.concatColumns(flat), (long) windows.length * seq, hidden);
        }

        @Override
        public void close() {
            for (Tensor[] ts : new Tensor[][] {in, target}) for (Tensor t : ts) if (t != null) t.close();
        }
    }

    /** LET's vectors for this recipe, or null without LET. */
    private static EquivalentTransform transform(HeapBlock fp, OmniQuantConfig cfg) {
        // shifts only with activation quantization (the reference's use_shift), where the norm and linears have biases
        return cfg.let() ? new EquivalentTransform(fp, cfg.abits() < 16, cfg.qkScale(), cfg.letDown()) : null;
    }

    /**
     * The objective with parameters learned before ({@link OmniQuantObjective#learned}, by an earlier run) instead
     * of training: {@code fold} then gives the block that training gave.
     */
    private static OmniQuantObjective restore(DecoderBlock fpBlock, OmniQuantConfig cfg, java.util.Map<String, float[]> learned,
                                             String source) {
        HeapBlock fp = HeapBlock.of(fpBlock);
        OmniQuantObjective objective = new OmniQuantObjective(fp, transform(fp, cfg), cfg.weightSpec(), cfg.lwc(), cfg.activations());
        objective.restore(learned, source);
        return objective;
    }

    /**
     * Matrix-product FLOPs of one training step: the forward's linear layers (2·tokens·in·out each) and
     * attention's two products (2·2·seq²·headDim per head and window, the full square as computed), and a
     * backward of twice the forward (one product for the input's gradient, one for the weight's). Element-wise
     * work is left out, so the rate is the one to hold against the matrix-product ceiling.
     */
    static double trainingStepFlops(HeapBlock fp, int windows, int seq) {
        double tokens = (double) windows * seq, forward = 0;
        for (HeapBlock.Layer l : fp.layers) forward += 2.0 * tokens * l.in() * l.out();
        forward += 4.0 * windows * fp.spec.numHeads() * (double) seq * seq * fp.spec.headDim();
        return 3 * forward;
    }

    private static void shuffle(int[] a, Random rnd) {
        for (int i = a.length - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            int tmp = a[i];
            a[i] = a[j];
            a[j] = tmp;
        }
    }

    /**
     * The reference's LET start: {@code s = max|X|^α / max|W|^(1−α)} (clamped at 1e-5) per input channel,
     * W the first linear reading the channel (q_proj, up_proj/fc1, o_proj/out_proj, down_proj) and X its input on the
     * full-precision stream ({@code ranges}); the shift from the moving average of channel mid-ranges. The
     * value-to-output scale per value channel takes the max over the query heads sharing it.
     */
    static void initialize(EquivalentTransform let, HeapBlock fp, InputRanges ranges, OmniQuantConfig cfg) {
        String qName = fp.layer(Proj.Q).name(), upName = fp.layer(Proj.UP).name(), oName = fp.layer(Proj.O).name();
        int hidden = fp.hidden();
        int oIn = fp.layer(Proj.O).in();
        double alpha = cfg.alpha();
        smoothScale(let.attnScale, ranges.absMax(qName), fp.layer(Proj.Q), fp.rowsOf[Proj.Q.ordinal()], alpha);
        if (let.attnShift != null) System.arraycopy(ranges.shift(qName), 0, let.attnShift, 0, hidden);
        if (let.mlpScale != null) {
            smoothScale(let.mlpScale, ranges.absMax(upName), fp.layer(Proj.UP), null, alpha);
            if (let.mlpShift != null) System.arraycopy(ranges.shift(upName), 0, let.mlpShift, 0, hidden);
        }
        // output projection: per value channel, the max over the query heads that read it
        float[] oScale = new float[oIn], oShift = ranges.shift(oName);
        smoothScale(oScale, ranges.absMax(oName), fp.layer(Proj.O), null, alpha);
        int d = fp.spec.headDim();
        int groups = oIn / let.outScale.length;
        java.util.Arrays.fill(let.outScale, 0f);
        float[] shiftSum = new float[let.outScale.length];
        for (int j = 0; j < oIn; j++) {
            int c = ((j / d) / groups) * d + j % d;
            let.outScale[c] = Math.max(let.outScale[c], oScale[j]);
            shiftSum[c] += oShift[j] / groups;
        }
        if (let.outShift != null) System.arraycopy(shiftSum, 0, let.outShift, 0, shiftSum.length);
        if (let.downScale != null) smoothScale(let.downScale, ranges.absMax(fp.layer(Proj.DOWN).name()), fp.layer(Proj.DOWN), null, alpha);
        let.truncateScales();
    }

    private static void smoothScale(float[] into, float[] actMax, HeapBlock.Layer layer, int[] rows, double alpha) {
        int in = layer.in();
        float[] wMax = new float[in];
        int count = rows == null ? layer.out() : rows.length;
        for (int i = 0; i < count; i++) {
            int r = rows == null ? i : rows[i];
            for (int c = 0; c < in; c++) wMax[c] = Math.max(wMax[c], Math.abs(layer.w()[r * in + c]));
        }
        for (int c = 0; c < in; c++) {
            double a = Math.max(actMax[c], 1e-5), w = Math.max(wMax[c], 1e-5);
            into[c] = (float) Math.max(Math.pow(a, alpha) / Math.pow(w, 1 - alpha), 1e-5);
        }
    }
}
