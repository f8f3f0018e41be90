package io.blockquant.cli;

import io.blockquant.export.CheckpointExport;
import io.blockquant.export.ShardPlan;
import io.blockquant.spark.SparkSessions;
import java.util.Locale;
import java.util.concurrent.Callable;
import org.apache.spark.sql.SparkSession;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code export}: a model store as a Hugging Face checkpoint in a serving layout. */
@Command(name = "export", mixinStandardHelpOptions = true, sortOptions = false,
        description = {
            "Write a finished model store as a Hugging Face checkpoint folder: the tensors in model.safetensors, or in "
                + "shards model-00001-of-0000N.safetensors ... with model.safetensors.index.json when they exceed "
                + "--max-shard-size; config.json with a quantization_config; the tokenizer files. Each shard is written "
                + "by a Spark task straight from the store, one block at a time.",
            "gptq: AutoGPTQ/GPTQModel layout (int32-packed qweight and qzeros with the v1 zero - 1 convention, "
                + "float16 scales, g_idx), for INT stores of 2, 3, 4 or 8 bits.",
            "fp8: compressed-tensors float-quantized layout (float8_e4m3fn weights, float32 per-channel weight_scale), "
                + "for stores quantized with --wformat fp8 --wbits 8 --group 0; other stores are refused, not re-quantized."})
public final class ExportCommand implements Callable<Integer> {

    @Option(names = "--store", paramLabel = "STORE", required = true, description = "model store written by quantize (file:, hdfs:, s3a:)")
    String store;

    @Option(names = "--format", required = true, description = "gptq or fp8")
    String format;

    @Option(names = "--out", paramLabel = "DIR", required = true, description = "checkpoint folder to write: new, empty, or an earlier export (replaced)")
    String out;

    @Option(names = "--max-shard-size", paramLabel = "SIZE", defaultValue = "5GB",
            description = "largest safetensors file, in bytes of tensor data (default: ${DEFAULT-VALUE}, as Hugging Face's "
                    + "max_shard_size): 5GB, 500MB (KB, MB, GB, TB are powers of 1000), 2GiB (KiB, MiB, GiB, TiB: powers of "
                    + "1024) or a number of bytes. A tensor is never split: one larger than SIZE gets a shard of its own. "
                    + "A model that fits one shard is written as model.safetensors without an index.")
    String maxShardSize;

    @Option(names = "--master", description = "Spark master URL (default: the spark-submit one, else local[*])")
    String master;

    @Override
    public Integer call() {
        CheckpointExport.Format f = switch (format) {
            case "gptq" -> CheckpointExport.Format.GPTQ;
            case "fp8" -> CheckpointExport.Format.FP8;
            default -> throw new IllegalArgumentException("--format '" + format + "' (expected gptq or fp8)");
        };
        long maxShardBytes = ShardPlan.parseSize(maxShardSize);
        SparkSession spark = SparkSessions.getOrCreate("blockquant export", master);
        CheckpointExport.Result r = CheckpointExport.run(spark, store, f, out, maxShardBytes);
        System.out.printf(Locale.ROOT, "%s checkpoint of %s written to %s: %d tensors (%d quantized layers) in %d shard%s, %.1f MB%n",
                format, store, r.out(), r.tensors(), r.quantizedLayers(), r.shards(), r.shards() == 1 ? "" : "s", r.bytes() / 1e6);
        return 0;
    }
}
