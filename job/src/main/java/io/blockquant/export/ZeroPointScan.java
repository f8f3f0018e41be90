package io.blockquant.export;

import io.blockquant.spark.HadoopConf;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.StoreTensors;
import io.blockquant.store.TensorRecord;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

/**
 * Whether every zero point of an INT store has a GPTQ v1 encoding (an integer 1 .. 2^bits − 1), decided before
 * a GPTQ export writes anything: one Spark task per block reads only that block's {@code zeros} rows (a few KB
 * per layer), so the checkpoint is v1 or gptq_v2 as a whole.
 */
final class ZeroPointScan {

    private ZeroPointScan() {}

    /** The first layer whose zero points v1 cannot hold ({@code "block 3 mlp.up_proj"}), or null when all fit. */
    static String firstMisfit(SparkSession spark, Path store, List<Integer> blocks) {
        HadoopConf conf = new HadoopConf(spark.sparkContext().hadoopConfiguration());
        String root = store.toString();
        JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        List<String> misfits = sc.parallelize(blocks, Math.max(1, blocks.size())).map(b -> misfit(conf.get(), new Path(root), b))
                .filter(m -> !m.isEmpty()).collect();
        return misfits.isEmpty() ? null : misfits.stream().sorted().findFirst().orElseThrow();
    }

    private static String misfit(Configuration conf, Path root, int block) {
        // the width comes from each layer's qweight metadata: a zeros row written as float32 carries no bits
        java.util.Map<String, Integer> bits = new java.util.HashMap<>();
        for (StoreTensors.Info i : StoreTensors.list(conf, root, block)) {
            if (i.kind().equals(TensorRecord.QWEIGHT)) bits.put(i.module(), i.bits());
        }
        for (TensorRecord z : StoreTensors.readKind(conf, root, block, BlockRecords.ZEROS)) {
            float[] zeros = z.dtype().equals(TensorRecord.INT32) ? toFloats(z.toInts()) : z.toFloats();
            Integer b = bits.get(z.module());
            if (b == null) throw new IllegalStateException(root + ": block " + block + " module " + z.module() + " has zeros but no qweight");
            if (!GptqTensors.fitsV1(zeros, b)) return "block " + block + " " + z.module();
        }
        return "";
    }

    private static float[] toFloats(int[] v) {
        float[] f = new float[v.length];
        for (int i = 0; i < v.length; i++) f[i] = v[i];
        return f;
    }
}
