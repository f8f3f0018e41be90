package io.blockquant.algo;

import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.GramSum;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.Serializable;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * A quantization method, as the driver loop sees it: which statistics of a block's inputs it needs (the kind
 * of calibrator it is) and how it turns the block plus those statistics into stored weights. The loop gathers
 * what the kind asks for and nothing else; a new method implements one of the three kinds.
 */
public sealed interface BlockCalibrator extends Serializable
        permits BlockCalibrator.OnWeights, BlockCalibrator.OnGroupHessians, BlockCalibrator.OnBlockTargets {

    /** Needs no statistics: each layer's stored weight from its full-precision weight alone (RTN). */
    non-sealed interface OnWeights extends BlockCalibrator {
        StoredWeight quantize(Tensor weight);
    }

    /**
     * Needs the input Hessian {@code 2/n·Σ x·xᵀ} of each true-sequential group, taken on the block with the
     * earlier groups already quantized (GPTQ, Frantar et al. 2022, eq. 2).
     */
    non-sealed interface OnGroupHessians extends BlockCalibrator {
        /** What the method derives once per group from its Hessian's running sum, which is spent. */
        GptqQuantizer.PreparedHessian prepare(TensorBackend be, GramSum hessian);

        StoredWeight quantize(Tensor weight, GptqQuantizer.PreparedHessian hessian);

        /** {@link #quantize}, with the weight the block computes with from then on. */
        default QuantizedLayer quantizeLayer(Tensor weight, GptqQuantizer.PreparedHessian hessian) {
            return QuantizedLayer.of(quantize(weight, hessian), weight);
        }
    }

    /**
     * Needs the whole block's calibration inputs and the full-precision block's outputs on the full-precision
     * stream as targets (OmniQuant): learns parameters, then folds them into a calibrated block.
     */
    non-sealed interface OnBlockTargets extends BlockCalibrator {
        /**
         * Parameters learned on the calibration windows' inputs and targets (one array of {@code [seq, hidden]} per
         * window: a 70B block's 128 × 2048 windows are 2³¹ values, more than one Java array holds), and the block
         * folded from them. The target arrays are the caller's to give up: a method may overwrite them (OmniQuant's
         * augmented loss averages into them).
         */
        Learned train(DecoderBlock fp, float[][] inputs, float[][] targets, InputRanges fpRanges, int seq, long seed,
                      Consumer<String> progress);

        /**
         * The linears of {@code fp} whose input ranges on the full-precision stream the method starts from (LET's and
         * SmoothQuant's act_scales), empty for none. {@link #train} gets them as {@code fpRanges}; null there means
         * the inputs it is given are that stream, and the method takes the ranges from them.
         */
        List<String> rangedInputs(DecoderBlock fp);

        /** {@code given}, or else the ranges of {@link #rangedInputs} taken on {@code inputs}, a window a pass. */
        default InputRanges rangesOr(InputRanges given, DecoderBlock fp, float[][] inputs, int seq) {
            return given != null ? given : InputRanges.of(fp, rangedInputs(fp), inputs, seq, 1);
        }

        /** The block folded from parameters learned before ({@link Learned#parameters}); {@code source} names them in errors. */
        CalibratedBlock restore(DecoderBlock fp, Map<String, float[]> parameters, String source);

        /** Checks that {@code parameters} fit {@code fp} and this method's settings, without folding. */
        void check(DecoderBlock fp, Map<String, float[]> parameters, String source);

        /**
         * False when calibration changes a layer's inputs as well as its weight (LET's scales and shifts): then a
         * layer compared with the original one means nothing, and only the block's output error is measured.
         */
        boolean keepsLayerInputs();
    }

    /** What {@link OnBlockTargets#train} gives: the learned parameters by name and the folded block. */
    record Learned(Map<String, float[]> parameters, CalibratedBlock block) {}

    /** Windows {@code which} of {@code windows} (each {@code [seq, width]} row-major) as one {@code [which.length·seq, width]} array. */
    static float[] rows(float[][] windows, int... which) {
        int width = windows[which[0]].length;
        float[] out = new float[Math.multiplyExact(which.length, width)];
        for (int i = 0; i < which.length; i++) System.arraycopy(windows[which[i]], 0, out, i * width, width);
        return out;
    }

    /** Windows {@code from .. from + n − 1}, as {@link #rows(float[][], int...)}. */
    static float[] rows(float[][] windows, int from, int n) {
        return rows(windows, java.util.stream.IntStream.range(from, from + n).toArray());
    }

    /** {@code [count·seq, width]} rows split into {@code count} windows of equal size. */
    static float[][] windows(float[] rows, int count) {
        if (count <= 0 || rows.length % count != 0) throw new IllegalArgumentException(rows.length + " values in " + count + " windows");
        int width = rows.length / count;
        float[][] out = new float[count][];
        for (int w = 0; w < count; w++) out[w] = java.util.Arrays.copyOfRange(rows, w * width, (w + 1) * width);
        return out;
    }
}
