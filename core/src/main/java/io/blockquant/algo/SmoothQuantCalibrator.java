package io.blockquant.algo;

import io.blockquant.algo.omniquant.BlockGraph.Proj;
import io.blockquant.algo.omniquant.EquivalentTransform;
import io.blockquant.algo.omniquant.HeapBlock;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.tensor.TensorBackend;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * SmoothQuant (Xiao et al., 2023) for one block, as {@code mit-han-lab/smoothquant}'s {@code smooth_lm}: per input
 * channel j of the linears reading a norm, {@code s_j = max|X_j|^α / max|W_j|^(1−α)} (eq. 4; clamped at 1e-5, the
 * weight max over every reader), X the block's inputs on the full-precision stream (the pipeline's {@link
 * InputRanges}, as smoothquant's act_scales come from the unquantized model), folded as {@code norm/s} and {@code
 * W·diag(s)}; then the weights are rounded to nearest. It is LET's scale start without training (no
 * shifts, no value/output or query/key scale: those are OmniQuant's), the weight-activation baseline OmniQuant
 * compares with. The learned vectors are the two scales; {@code --omni-params} keeps and restores them.
 */
public record SmoothQuantCalibrator(IntQuantSpec weights, ActivationQuant activations, double alpha)
        implements BlockCalibrator.OnBlockTargets {

    static final String ATTN = "smoothquant.attn_scale", MLP = "smoothquant.mlp_scale";

    @Override
    public Learned train(DecoderBlock fp, float[][] inputs, float[][] targets, InputRanges fpRanges, int seq, long seed,
                         Consumer<String> progress) {
        HeapBlock heap = HeapBlock.of(fp);
        EquivalentTransform t = new EquivalentTransform(heap, false, false, false);
        List<String> readers = rangedInputs(fp);
        InputRanges ranges = rangesOr(fpRanges, fp, inputs, seq);
        smooth(t.attnScale, ranges.absMax(readers.get(0)), heap, t.readers().attnNorm(), alpha);
        if (t.mlpScale != null) smooth(t.mlpScale, ranges.absMax(readers.get(1)), heap, t.readers().mlpNorm(), alpha);
        Map<String, float[]> learned = named(t);
        return new Learned(learned, fold(fp, heap, t));
    }

    /** Each norm's output, as its first reader sees it. */
    @Override
    public List<String> rangedInputs(DecoderBlock fp) {
        var readers = fp.spec().family().descriptor().letNormReaders(fp.spec());
        List<String> names = new java.util.ArrayList<>(List.of(HeapBlock.name(fp, readers.attnNorm().get(0))));
        if (fp.mlpNorm() != null && !readers.mlpNorm().isEmpty()) names.add(HeapBlock.name(fp, readers.mlpNorm().get(0)));
        return names;
    }

    @Override
    public CalibratedBlock restore(DecoderBlock fp, Map<String, float[]> parameters, String source) {
        HeapBlock heap = HeapBlock.of(fp);
        EquivalentTransform t = restored(heap, parameters, source);
        return fold(fp, heap, t);
    }

    @Override
    public void check(DecoderBlock fp, Map<String, float[]> parameters, String source) {
        restored(HeapBlock.of(fp), parameters, source);
    }

    @Override
    public boolean keepsLayerInputs() {
        return false;
    }

    private static Map<String, float[]> named(EquivalentTransform t) {
        Map<String, float[]> out = new LinkedHashMap<>();
        out.put(ATTN, t.attnScale);
        if (t.mlpScale != null) out.put(MLP, t.mlpScale);
        return out;
    }

    private static EquivalentTransform restored(HeapBlock heap, Map<String, float[]> values, String source) {
        EquivalentTransform t = new EquivalentTransform(heap, false, false, false);
        Map<String, float[]> own = named(t);
        for (String k : values.keySet()) {
            if (!own.containsKey(k)) {
                throw new IllegalArgumentException(source + ": unexpected SmoothQuant parameter '" + k + "' (expected " + String.join(", ", own.keySet()) + ")");
            }
        }
        for (Map.Entry<String, float[]> e : own.entrySet()) {
            float[] v = values.get(e.getKey());
            if (v == null) throw new IllegalArgumentException(source + ": missing SmoothQuant parameter '" + e.getKey() + "'");
            if (v.length != e.getValue().length) {
                throw new IllegalArgumentException(source + ": SmoothQuant parameter '" + e.getKey() + "' has " + v.length + " values, expected "
                        + e.getValue().length);
            }
            for (int i = 0; i < v.length; i++) {
                if (!(v[i] > 0 && Float.isFinite(v[i]))) {
                    throw new IllegalArgumentException(source + ": SmoothQuant parameter '" + e.getKey() + "' holds " + v[i] + " at " + i);
                }
            }
            System.arraycopy(v, 0, e.getValue(), 0, v.length);
        }
        return t;
    }

    /** The scales folded in (exact: the smoothed full-precision block is the same function), then RTN weights. */
    private CalibratedBlock fold(DecoderBlock fpBlock, HeapBlock heap, EquivalentTransform t) {
        TensorBackend be = fpBlock.linears().get(0).weight().backend();
        EquivalentTransform.Applied a = t.apply();
        Map<String, QuantizedLinear> layers = new LinkedHashMap<>();
        float[][] w = new float[heap.layers.size()][];
        for (int i = 0; i < w.length; i++) {
            HeapBlock.Layer l = heap.layers.get(i);
            QuantizedLinear q = RtnQuantizer.quantize(be.fromFloats(a.weight[i], l.out(), l.in()), weights);
            layers.put(l.name(), q);
            w[i] = q.dequantize();
        }
        return new CalibratedBlock(heap.toBlock(be, a.attnNorm, a.mlpNorm, w, a.bias, activations), layers);
    }

    /** Eq. 4 over every linear reading the norm: the weight max of channel j is over all their rows. */
    static void smooth(float[] into, float[] actMax, HeapBlock heap, List<Proj> readers, double alpha) {
        int in = into.length;
        float[] wMax = new float[in];
        for (Proj p : readers) {
            HeapBlock.Layer l = heap.layer(p);
            int[] rows = heap.rowsOf[p.ordinal()];
            int count = rows == null ? l.out() : rows.length;
            for (int i = 0; i < count; i++) {
                int r = rows == null ? i : rows[i];
                for (int c = 0; c < in; c++) wMax[c] = Math.max(wMax[c], Math.abs(l.w()[r * in + c]));
            }
        }
        for (int c = 0; c < in; c++) {
            double w = Math.max(wMax[c], 1e-5);
            into[c] = (float) Math.max(Math.pow(actMax[c], alpha) / Math.pow(w, 1 - alpha), 1e-5);
        }
    }
}
