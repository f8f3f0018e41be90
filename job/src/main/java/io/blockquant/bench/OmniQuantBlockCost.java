package io.blockquant.bench;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.OmniQuantCalibrator;
import io.blockquant.algo.OmniQuantConfig;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.Family;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.Backends;
import io.blockquant.tensor.TensorBackend;
import java.util.Locale;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * What OmniQuant W2A16 g64 costs on the tiny model: block 0 trained for a few epochs on the calibration set,
 * extrapolated to the recipe's epochs × every block (a whole run takes too long to time).
 */
public final class OmniQuantBlockCost {

    private OmniQuantBlockCost() {}

    /** Adds the figures to {@code section} of {@code report}. */
    public static void run(BenchReport report, String section, String modelDir, CalibrationSet calibration, int epochs) {
        if (epochs < 1) throw new IllegalArgumentException("--omniquant-epochs must be ≥ 1, got " + epochs);
        TensorBackend be = Backends.cpu();
        Configuration conf = new Configuration();
        Path dir = new Path(modelDir);
        ModelSpec spec = ModelSpecReader.read(dir, conf);
        int n = calibration.size(), seq = calibration.seqlen();
        int[][] windows = calibration.windows().toArray(new int[0][]);
        DecoderBlock block;
        float[] inputs;
        try (Checkpoint ckpt = Checkpoint.open(dir, conf)) {
            CausalLm lm = new ModelLoader(ckpt, spec, be).model();
            block = lm.blocks().get(0);
            inputs = be.scratchValue(() -> lm.embed(windows).toFloats());
        }
        DecoderBlock fp = block;
        float[] targets = be.scratchValue(() -> fp.forward(be.fromFloats(inputs, (long) n * seq, spec.hiddenSize()), n, seq).toFloats());
        OmniQuantConfig recipe = OmniQuantConfig.of(Family.LLAMA, 2, 64, 16);
        MemoryProbe probe = MemoryProbe.start();
        long t0 = System.nanoTime();
        OmniQuantCalibrator.calibrate(block, BlockCalibrator.windows(inputs, n), BlockCalibrator.windows(targets, n), seq,
                recipe.withEpochs(epochs), 0, null);
        double seconds = (System.nanoTime() - t0) / 1e9;
        MemoryProbe.Peaks p = probe.peaks();
        double whole = seconds / epochs * recipe.epochs() * spec.numLayers();
        report.row(section, "OmniQuant W2A16 g64, block 0 × " + epochs + " epochs", String.format(Locale.ROOT, "%.1f s", seconds),
                "peak heap " + BenchReport.megabytes(p.heapBytes()) + ", peak RSS " + BenchReport.megabytes(p.rssPeakBytes()));
        report.row(section, "  extrapolated: " + recipe.epochs() + " epochs × " + spec.numLayers() + " blocks", String.format(Locale.ROOT, "%.0f s", whole),
                "assumes epochs and blocks cost alike; excludes the Spark stages around it");
        report.put("e2e_omniquant_block_seconds", seconds);
        report.put("e2e_omniquant_model_seconds_est", whole);
    }
}
