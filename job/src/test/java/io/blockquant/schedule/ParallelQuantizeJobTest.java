package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.Fixtures;
import io.blockquant.algo.GptqSettings;
import io.blockquant.algo.LorcSettings;
import io.blockquant.algo.WeightFormat;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.ModelFormatException;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.spark.SparkSessions;
import io.blockquant.store.LayerError;
import io.blockquant.store.StoreReader;
import io.blockquant.store.StoredModel;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Random;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code quantize --mode parallel} through Spark ({@code local[2]}) on tiny-llama, GPTQ W3 g64 on 8 windows
 * of 64 tokens in 4 partitions: killed before a commit, it resumes with the blocks it committed, and every
 * block's recorded output error, those committed before the kill and after it, is the one measured on the
 * <em>full-precision</em> prefix's outputs, recomputed here without Spark (and not the one on the quantized
 * prefix's outputs, as sequential mode measures it).
 */
class ParallelQuantizeJobTest {

    static SparkSession spark;
    static final int WINDOWS = 8, SEQ = 64, BLOCKS = 8;

    @BeforeAll
    static void startSpark() {
        spark = SparkSessions.getOrCreate("parallel-quantize-test", "local[2]");
    }

    @AfterAll
    static void stopSpark() {
        spark.stop();
    }

    static CalibrationSet calibration() {
        Random rnd = new Random(7);
        int[] tokens = new int[4096];
        for (int i = 0; i < tokens.length; i++) tokens[i] = rnd.nextInt(4096);
        return CalibrationSet.draw(tokens, "random tokens", WINDOWS, SEQ, 3);
    }

    static QuantizeSettings gptqW3g64Parallel() {
        IntQuantSpec w = new IntQuantSpec(3, 64, false);
        return new QuantizeSettings(new GptqSettings(new WeightFormat(w, null), 0.01, false, false, LorcSettings.NONE), 0, null,
                WINDOWS, SEQ, 0, 2, QuantizeSettings.PARALLEL);
    }

    static QuantizeJob.Summary quantize(Path store, boolean resume) {
        String model = Fixtures.model("tiny-llama").toString();
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream(), true);
        return QuantizeJob.run(spark, new QuantizeJob.Request(model, store.toString(), gptqW3g64Parallel(), resume),
                calibration(), quiet);
    }

    @Test
    void killedAndResumedStoreHasEveryBlockCalibratedOnFullPrecisionInputs(@TempDir Path tmp) {
        Path out = tmp.resolve("resumed");
        System.setProperty("blockquant.fault.beforeCommit", "5");
        try {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> quantize(out, false));
            assertTrue(e.getMessage().contains("fault injected before committing block 5"), e.getMessage());
        } finally {
            System.clearProperty("blockquant.fault.beforeCommit");
        }
        assertThrows(ModelFormatException.class, () -> StoreReader.open(spark, out.toString()));
        QuantizeJob.Summary resumed = quantize(out, true);
        long skipped = resumed.blocks().stream().filter(QuantizeJob.BlockSummary::skipped).count();
        assertTrue(skipped >= 1 && skipped < BLOCKS, "blocks committed before the fault: " + skipped);
        assertEquals(BLOCKS, resumed.blocks().size());

        StoreReader b = StoreReader.open(spark, out.toString());
        assertEquals(java.util.List.of(0, 1, 2, 3, 4, 5, 6, 7), b.blocks());

        // the reference: the full-precision model's block inputs, and the stored (dequantized) blocks, without Spark
        Configuration conf = new Configuration();
        org.apache.hadoop.fs.Path modelDir = new org.apache.hadoop.fs.Path(Fixtures.model("tiny-llama").toString());
        ModelSpec spec = ModelSpecReader.read(modelDir, conf);
        TensorBackend be = Nd4jBackend.INSTANCE;
        InMemoryWeights stored = StoredModel.read(b, spec);
        ModelLoader quantized = new ModelLoader(stored, spec, be);
        double[] err2 = new double[BLOCKS], ref2 = new double[BLOCKS], seqErr2 = new double[BLOCKS], seqRef2 = new double[BLOCKS];
        try (Checkpoint ckpt = Checkpoint.open(modelDir, conf)) {
            ModelLoader fp = new ModelLoader(ckpt, spec, be);
            CausalLm stem = fp.stem();
            CalibrationSet calib = calibration();
            for (int p = 0; p < WINDOWS / 2; p++) {
                int[][] batch = {calib.windows().get(2 * p), calib.windows().get(2 * p + 1)};
                Tensor x = stem.embed(batch), xq = x;
                for (int i = 0; i < BLOCKS; i++) {
                    DecoderBlock f = fp.block(i), q = quantized.block(i);
                    Tensor y = f.forward(x, 2, SEQ);
                    err2[i] += be.sumOfSquares(be.sub(q.forward(x, 2, SEQ), y));
                    ref2[i] += be.sumOfSquares(y);
                    // what sequential mode would measure: both blocks on the quantized prefix's outputs
                    Tensor yq = q.forward(xq, 2, SEQ), yf = f.forward(xq, 2, SEQ);
                    seqErr2[i] += be.sumOfSquares(be.sub(yq, yf));
                    seqRef2[i] += be.sumOfSquares(yf);
                    x = y;
                    xq = yq;
                }
            }
        }
        for (LayerError e : b.layerErrors()) {
            if (!e.module().equals(QuantizeJob.BLOCK_OUTPUT)) continue;
            int i = e.block();
            double expected = Math.sqrt(err2[i] / ref2[i]);
            assertEquals(expected, e.relativeOutputError(), 1e-4 * expected,
                    "block " + i + ": output error on the full-precision prefix's outputs");
            if (i > 0) {
                double onQuantizedPrefix = Math.sqrt(seqErr2[i] / seqRef2[i]);
                assertTrue(Math.abs(onQuantizedPrefix - expected) > 1e-3 * expected,
                        "block " + i + ": the quantized prefix would give " + onQuantizedPrefix + ", as much as " + expected);
            }
        }
    }

    /**
     * Where block tasks compute on devices, each executor walks the full-precision blocks itself with the inputs kept
     * where it computes ({@link FullPrecisionWalk}; the CPU backend takes that path here, as on a GPU): no capture pass,
     * and the very store the capture pass gives, tensor for tensor and error for error.
     */
    @Test
    void walkingTheFullPrecisionBlocksStoresWhatTheCaptureStores(@TempDir Path tmp) {
        QuantizeJob.Summary captured = quantize(tmp.resolve("captured"), false);
        String model = Fixtures.model("tiny-llama").toString();
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        QuantizeJob.Summary walked;
        BlockTask.residentOnCpu = true;
        try {
            walked = QuantizeJob.run(spark, new QuantizeJob.Request(model, tmp.resolve("walked").toString(), gptqW3g64Parallel(), false),
                    calibration(), new PrintStream(log, true));
        } finally {
            BlockTask.residentOnCpu = false;
        }
        assertTrue(log.toString().contains("each executor runs the full-precision blocks itself"), log.toString());
        assertTrue(!log.toString().contains("captured the full-precision inputs"), log.toString());
        for (int i = 0; i < BLOCKS; i++) {
            assertEquals(captured.blocks().get(i).blockError(), walked.blocks().get(i).blockError(), 0.0, "block " + i + " output error");
            assertEquals(captured.blocks().get(i).layerErrors(), walked.blocks().get(i).layerErrors(), "block " + i + " layer errors");
        }
        ModelSpec spec = ModelSpecReader.read(new org.apache.hadoop.fs.Path(model), new Configuration());
        InMemoryWeights a = StoredModel.read(StoreReader.open(spark, tmp.resolve("captured").toString()), spec);
        InMemoryWeights w = StoredModel.read(StoreReader.open(spark, tmp.resolve("walked").toString()), spec);
        assertEquals(a.tensorNames(), w.tensorNames());
        for (String t : a.tensorNames()) org.junit.jupiter.api.Assertions.assertArrayEquals(a.readFloats(t), w.readFloats(t), t);
    }
}
