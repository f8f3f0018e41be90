package io.blockquant.spark;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.serializers.JavaSerializer;
import io.blockquant.eval.NllSum;
import org.apache.spark.serializer.KryoRegistrator;

/**
 * Registers what blockquant sends between driver and executors. Java records go through Kryo's
 * JavaSerializer: Spark's Kryo cannot build field serializers for records (no Unsafe offsets).
 */
public final class KryoClasses implements KryoRegistrator {

    @Override
    public void registerClasses(Kryo kryo) {
        kryo.register(int[].class);
        kryo.register(float[].class);
        kryo.register(double[].class);
        kryo.register(long[].class);
        // broadcasts of dequantized weights by layer name
        kryo.register(java.util.HashMap.class);
        // OmniQuant's trained block: a list of store rows
        kryo.register(java.util.ArrayList.class);
        kryo.register(NllSum.class, new JavaSerializer());
        kryo.register(io.blockquant.algo.GptqQuantizer.PreparedHessian.class, new JavaSerializer());
        kryo.register(io.blockquant.algo.FpQuantizedLinear.class, new JavaSerializer());
        kryo.register(io.blockquant.algo.LorcCompensated.class, new JavaSerializer());
        kryo.register(io.blockquant.algo.Lorc.Factors.class, new JavaSerializer());
        kryo.register(io.blockquant.store.TensorRecord.class, new JavaSerializer());
        kryo.register(io.blockquant.model.InMemoryWeights.class, new JavaSerializer());
        kryo.register(io.blockquant.calib.CalibrationSet.class, new JavaSerializer());
        kryo.register(io.blockquant.algo.QuantizedLinear.class, new JavaSerializer());
        kryo.register(io.blockquant.quant.IntQuantSpec.class, new JavaSerializer());
        kryo.register(io.blockquant.algo.HessianAccumulator.class, new JavaSerializer());
        kryo.register(io.blockquant.schedule.BlockStats.class, new JavaSerializer());
        kryo.register(io.blockquant.schedule.BlockLoop.Outcome.class, new JavaSerializer());
        // the plan of block -1's parts: which rows of which checkpoint tensor each write task copies
        kryo.register(io.blockquant.schedule.QuantizeJob.ModelPart.class, new JavaSerializer());
        kryo.register(io.blockquant.export.AddedError.class, new JavaSerializer());
        // a full-precision pass's input ranges, per task, for LET's and SmoothQuant's start
        kryo.register(io.blockquant.algo.InputRanges.class, new JavaSerializer());
    }
}
