package io.blockquant.schedule;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.GptqQuantizer;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.algo.StoredWeight;
import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.nn.Linear;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.tensor.GramSum;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.util.HashMap;
import java.util.Map;

/**
 * What a calibration task does to one partition of a block's inputs: the math of the pipeline, with no
 * Spark and no I/O. Inputs are {@code [windows·seq, hidden]} float32, row-major.
 */
public final class BlockWork {

    private BlockWork() {}

    /** Thrown by an input tap once it has what it needs: the rest of the block's forward pass is skipped. */
    private static final class Enough extends RuntimeException {
        Enough() {
            super(null, null, false, false);
        }
    }

    /** Each stored weight dequantized, by module: what the block computes with once those layers are quantized. */
    public static Map<String, float[]> dequantized(Map<String, StoredWeight> layers) {
        Map<String, float[]> out = new java.util.LinkedHashMap<>();
        layers.forEach((m, q) -> out.put(m, q.dequantize()));
        return out;
    }

    /** The block with the given linear layers' weights replaced (dequantized weights of layers done so far). */
    public static DecoderBlock withWeights(DecoderBlock block, Map<String, float[]> weights) {
        return block.mapLinears(l -> {
            float[] w = weights.get(l.name());
            return w == null ? l : l.withWeight(l.weight().backend().fromFloats(w, l.weight().shape()));
        });
    }

    /** The block with the given linear layers' weights replaced by tensors already on its backend. */
    static DecoderBlock withWeightTensors(DecoderBlock block, Map<String, Tensor> weights) {
        return block.mapLinears(l -> {
            Tensor w = weights.get(l.name());
            return w == null ? l : l.withWeight(w);
        });
    }

    /** The block with per-token activation quantization of {@code bits} on every linear's input (0: none). */
    public static DecoderBlock withInputBits(DecoderBlock block, int bits) {
        return bits <= 0 ? block : block.mapLinears(l -> l.withInputBits(bits));
    }

    /**
     * The block with the recipe's activation quantization: every linear's input (FP8, symmetric or asymmetric INT
     * per token, or none) and attention's Q, K, V or KV cache.
     */
    static DecoderBlock withActivations(DecoderBlock block, QuantizeSettings s) {
        ActivationQuant a = s.activations();
        return block.mapLinears(l -> l.withInput(a.linearInputs())).withAttnQuant(a.attention());
    }

    /**
     * GPTQ's Hessian statistics of the input of layer {@code module}: runs the block on {@code inputs} only
     * as far as that layer and adds its input (after activation quantization, when the layer has it).
     */
    public static HessianAccumulator hessian(DecoderBlock block, String module, float[] inputs, int batch, int seq) {
        Linear target = find(block, module);
        HessianAccumulator acc = new HessianAccumulator(target.inFeatures());
        TensorBackend be = target.weight().backend();
        be.scratchValue(() -> {
            addHessian(block, module, be.fromFloats(inputs, (long) batch * seq, inputs.length / ((long) batch * seq)), batch, seq, acc);
            return null;
        });
        return acc;
    }

    /** As above, into {@code sum}, on inputs already on the block's backend. */
    public static void addHessian(DecoderBlock block, String module, Tensor inputs, int batch, int seq, GramSum sum) {
        DecoderBlock tapped = block.mapLinears(l -> !l.name().equals(module) ? l : l.withInputTap(x -> {
            sum.add(x);
            throw new Enough();
        }));
        TensorBackend be = find(block, module).weight().backend();
        try {
            be.scratchValue(() -> tapped.forward(inputs, batch, seq));
        } catch (Enough done) {
            // the tap has the layer's input
        }
    }

    /**
     * The outputs of a quantized block on one partition, and what quantization did to it; {@code kept}: the outputs
     * as a tensor of the block's backend when asked for, else null.
     */
    record Outputs(float[] hidden, BlockStats stats, Tensor kept) {}

    /** Where a pass leaves the quantized block's outputs: nowhere (the last block), on the heap, or kept as a backend tensor. */
    enum OutputsTo { NOWHERE, HEAP, BACKEND }

    /**
     * Runs the quantized block on {@code inputs} (its outputs feed the next block) and the full-precision
     * block on the same inputs, and measures per linear layer {@code ‖X(W − Ŵ)ᵀ‖²} against {@code ‖XWᵀ‖²} on
     * the inputs each layer sees in the quantized block, and for the block output {@code ‖y_q − y_fp‖²};
     * {@code perLayer = false} skips the per-layer errors (after an equivalent transformation a layer's weight and
     * input are both changed, so comparing it with the original layer means nothing).
     */
    static Outputs outputs(DecoderBlock fp, DecoderBlock quantized, float[] inputs, int batch, int seq, boolean perLayer) {
        TensorBackend be = fp.linears().get(0).weight().backend();
        long rows = (long) batch * seq;
        return be.scratchValue(() -> outputs(fp, quantized, be.fromFloats(inputs, rows, inputs.length / rows), batch, seq, perLayer,
                OutputsTo.HEAP));
    }

    /** As above, on inputs already on the blocks' backend, the outputs left where {@code to} says. */
    static Outputs outputs(DecoderBlock fp, DecoderBlock quantized, Tensor x, int batch, int seq, boolean perLayer, OutputsTo to) {
        Map<String, Tensor> fpWeights = new HashMap<>();
        for (Linear l : fp.linears()) fpWeights.put(l.name(), l.weight());
        BlockStats stats = new BlockStats();
        TensorBackend be = fp.linears().get(0).weight().backend();
        DecoderBlock measured = !perLayer ? quantized : quantized.mapLinears(l -> l.withInputTap(in -> {
            Tensor w = fpWeights.get(l.name());
            Tensor ref = be.matmul(in, w, false, true);
            Tensor err = be.sub(ref, be.matmul(in, l.weight(), false, true));
            stats.addLayer(l.name(), be.sumOfSquares(err), be.sumOfSquares(ref), in.size(0));
        }));
        float[][] out = new float[1][];
        java.util.function.Supplier<Tensor> pass = () -> {
            Tensor yq = measured.forward(x, batch, seq);
            Tensor yfp = fp.forward(x, batch, seq);
            stats.block[0] += be.sumOfSquares(be.sub(yq, yfp));
            stats.block[1] += be.sumOfSquares(yfp);
            if (to == OutputsTo.HEAP) out[0] = yq.toFloats();
            return yq;
        };
        Tensor kept = to == OutputsTo.BACKEND ? be.scratch(pass) : null;
        if (to != OutputsTo.BACKEND) be.scratchValue(pass::get);
        return new Outputs(out[0], stats, kept);
    }

    /**
     * A block of {@code spec}'s family built from tensors under their names relative to the block
     * ({@link DecoderBlock#tensors()} names): how a calibrated block (norms changed by LET included) is put
     * back together on an executor.
     */
    public static DecoderBlock rebuild(ModelSpec spec, int block, Map<String, float[]> values, Map<String, long[]> shapes,
                                       TensorBackend be) {
        String prefix = new ModelLoader(new InMemoryWeights("names", Map.of(), Map.of()), spec, be).blockPrefix(block);
        Map<String, float[]> v = new HashMap<>();
        Map<String, long[]> s = new HashMap<>();
        values.forEach((k, x) -> v.put(prefix + k, x));
        shapes.forEach((k, x) -> s.put(prefix + k, x));
        return new ModelLoader(new InMemoryWeights("calibrated block " + block, v, s), spec, be).block(block);
    }

    /**
     * The calibrator's factorization of the Hessian of {@code module}'s input in block {@code block}. A Hessian that the
     * damping leaves not positive definite (dead input channels beyond what damping covers, too few tokens) is the
     * user's to act on: one line naming the block, the layer and the setting.
     */
    static GptqQuantizer.PreparedHessian prepare(BlockCalibrator calibrator, TensorBackend be, GramSum hessian, int block, String module) {
        try {
            return ((BlockCalibrator.OnGroupHessians) calibrator).prepare(be, hessian);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("block " + block + " " + module + ": GPTQ cannot factor its input Hessian ("
                    + e.getMessage() + "); raise --damp, or calibrate on more windows", e);
        }
    }

    static Linear find(DecoderBlock block, String module) {
        for (Linear l : block.linears()) if (l.name().equals(module)) return l;
        throw new IllegalArgumentException("the block has no linear layer " + module);
    }
}
