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
            "gptq: AutoGPTQ/GPTQModel layout (int32-packed qweight and qzeros, float16 scales, g_idx), for weight-only INT "
                + "stores of 2, 3, 4 or 8 bits. checkpoint_format \"gptq\" (v1: qzeros holds zero - 1) when every zero point "
                + "is 1 or more; \"gptq_v2\" (qzeros holds the zero point, read by GPTQModel and vLLM's gptq loader) when a "
                + "zero point is 0, as asymmetric groups whose minimum is about 0 have. Decided before writing, for the whole model.",
            "compressed-tensors: the scheme vLLM serves for the store: pack-quantized (weight-only INT 2..8 bits, group or "
                + "channel, with weight_zero_point when asymmetric, weight_g_idx after act-order), int-quantized (INT8 "
                + "symmetric per-channel weights with --abits 8: W8A8, dynamic per-token activations), float-quantized (FP8 "
                + "E4M3 per channel), mxfp4-pack-quantized (FP4 with power-of-two scales: --scale-constraint m1, exact) or "
                + "nvfp4-pack-quantized (other FP4 stores: scales re-expressed as E4M3 times a power-of-two global scale per "
                + "block; the relative weight error that adds is printed). No kv_cache_scheme: stores do not quantize K/V.",
            "fp8: compressed-tensors for FP8 stores only (--wformat fp8 --wbits 8 --group 0); other stores are refused, not re-quantized.",
            "--out must be new, empty, or a folder an earlier export wrote (it holds blockquant-export.json): that one is "
                + "replaced once the new checkpoint is complete. Any other folder is refused and left as it is."})
public final class ExportCommand implements Callable<Integer> {

    @Option(names = "--store", paramLabel = "STORE", required = true, description = "model store written by quantize (file:, hdfs:, s3a:)")
    String store;

    @Option(names = "--format", required = true, description = "gptq, compressed-tensors or fp8")
    String format;

    @Option(names = "--out", paramLabel = "DIR", required = true, description = "checkpoint folder to write: new, empty, or an earlier blockquant export (replaced)")
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
            case "compressed-tensors" -> CheckpointExport.Format.COMPRESSED_TENSORS;
            case "fp8" -> CheckpointExport.Format.FP8;
            default -> throw new IllegalArgumentException("--format '" + format + "' (expected gptq, compressed-tensors or fp8)");
        };
        long maxShardBytes = ShardPlan.parseSize(maxShardSize);
        // executors resolve relative paths against their own working folders
        org.apache.hadoop.conf.Configuration conf = new org.apache.hadoop.conf.Configuration();
        store = UserPaths.absolute(store, conf);
        out = UserPaths.absolute(out, conf);
        SparkSession spark = SparkSessions.getOrCreate("blockquant export", master);
        CheckpointExport.Result r = CheckpointExport.run(spark, store, f, out, maxShardBytes);
        System.out.printf(Locale.ROOT, "%s checkpoint (%s) of %s written to %s: %d tensors (%d quantized layers) in %d shard%s, %.1f MB%s%n",
                format, r.layout(), store, r.out(), r.tensors(), r.quantizedLayers(), r.shards(), r.shards() == 1 ? "" : "s", r.bytes() / 1e6,
                r.worstLayer() == null ? "" : String.format(Locale.ROOT, "; scales re-expressed: relative weight error %.3e (largest %.3e, %s)",
                        r.addedError(), r.worstError(), r.worstLayer()));
        return 0;
    }
}
