package io.blockquant;

import static io.blockquant.BadInputTest.assertNoStore;
import static io.blockquant.BadInputTest.assertOneError;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.cli.EvalCommandTest;
import io.blockquant.cli.EvalCommandTest.Run;
import io.blockquant.model.DType;
import io.blockquant.model.SafetensorsFile;
import io.blockquant.model.SafetensorsWriter;
import io.blockquant.schedule.OmniQuantParameterFiles;
import io.blockquant.spark.SparkSessions;
import io.blockquant.store.StoreReader;
import io.blockquant.store.TensorRecord;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code quantize --omni-params}: a trained run writes each block's learned LWC/LET vectors, and a run folding
 * from those files (no training) stores the same tensors bit for bit, which is how parameters learned on a GPU
 * machine become a store here; a parameter file that does not fit the recipe is refused with one clear error.
 */
class OmniQuantParametersTest {

    static SparkSession spark;

    @TempDir
    static Path shared;

    static Path model, calib;

    @BeforeAll
    static void start() throws IOException {
        spark = SparkSessions.getOrCreate("omniquant-parameters-test", "local[2]");
        model = TinyCheckpoint.llama(2, 3).write(Files.createDirectories(shared.resolve("model")), 1);
        calib = Fixtures.shortCalibrationText(shared);
    }

    @AfterAll
    static void stop() {
        if (spark != null) spark.stop();
    }

    @TempDir
    Path tmp;

    static Run quantize(Path out, Path params, String... more) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--calib", calib.toString(), "--nsamples", "4",
                "--seqlen", "16", "--windows-per-task", "2", "--no-eval", "--master", "local[2]", "--method", "omniquant",
                "--wbits", "4", "--abits", "4", "--let", "--out", out.toString(), "--omni-params", params.toString()));
        args.addAll(List.of(more));
        if (!args.contains("--epochs")) args.addAll(List.of("--epochs", "2"));
        return EvalCommandTest.run(args.toArray(String[]::new));
    }

    /**
     * {@code --let-down}: the up→down scale is learned (two epochs move it from its start, the zero-epoch run's),
     * written with the other vectors, and a run folding from the files stores what training stored.
     */
    @Test
    void theUpToDownScaleIsLearnedAndFoldsFromItsFile() {
        Path params = tmp.resolve("down-params"), start = tmp.resolve("down-start");
        Run trained = quantize(tmp.resolve("down"), params, "--let-down");
        assertEquals(0, trained.code(), trained.err());
        Run untrained = quantize(tmp.resolve("down-0"), start, "--let-down", "--epochs", "0");
        assertEquals(0, untrained.code(), untrained.err());
        Configuration conf = new Configuration();
        for (int block = 0; block < 2; block++) {
            float[] learned = OmniQuantParameterFiles.read(conf, params.toString(), block).get("let.down_scale");
            float[] initial = OmniQuantParameterFiles.read(conf, start.toString(), block).get("let.down_scale");
            assertTrue(learned != null && learned.length == TinyCheckpoint.FF, "block " + block + " learns one scale per intermediate channel");
            assertTrue(!java.util.Arrays.equals(learned, initial), "block " + block + ": the scale trains");
        }
        Run folded = quantize(tmp.resolve("down-folded"), params, "--let-down");
        assertEquals(0, folded.code(), folded.err());
        StoreReader a = StoreReader.open(spark, tmp.resolve("down").toString());
        StoreReader b = StoreReader.open(spark, tmp.resolve("down-folded").toString());
        for (int block = 0; block < 2; block++) assertEquals(a.tensors(block), b.tensors(block), "block " + block);
    }

    @Test
    void foldingFromLearnedParametersStoresTheTrainedBlocks() {
        Path params = tmp.resolve("params");
        Run trained = quantize(tmp.resolve("trained"), params);
        assertEquals(0, trained.code(), trained.err());
        for (int b = 0; b < 2; b++) assertTrue(Files.exists(params.resolve("block-" + b + ".safetensors")), "block " + b + "'s parameters");
        assertTrue(trained.err().lines().anyMatch(l -> l.matches(".*epoch 1 loss \\S+, \\d+\\.\\d s, \\d+\\.\\d\\d ms a step, \\S+ GFLOP/s")),
                "the first run trains, each epoch with its time a step:\n" + trained.err());

        Run folded = quantize(tmp.resolve("folded"), params);
        assertEquals(0, folded.code(), folded.err());
        assertTrue(!folded.err().contains("epoch 0 loss"), "the second run must not train:\n" + folded.err());
        assertEquals(2, folded.err().lines().filter(l -> l.contains("learned parameters from")).count(), folded.err());

        StoreReader a = StoreReader.open(spark, tmp.resolve("trained").toString());
        StoreReader b = StoreReader.open(spark, tmp.resolve("folded").toString());
        for (int block = 0; block < 2; block++) {
            List<TensorRecord> x = a.tensors(block), y = b.tensors(block);
            assertTrue(x.size() > 7, "block " + block + " holds its quantized layers and norms");
            assertEquals(x, y, "block " + block);
        }
    }

    @Test
    void aParameterFileWithoutATensorIsRefused() throws IOException {
        Path params = tmp.resolve("params");
        Run trained = quantize(tmp.resolve("trained"), params);
        assertEquals(0, trained.code(), trained.err());
        // block 1's file without its down_proj's β
        Configuration conf = new Configuration();
        org.apache.hadoop.fs.Path file = OmniQuantParameterFiles.file(params.toString(), 1);
        FileSystem fs = file.getFileSystem(conf);
        List<SafetensorsWriter.Tensor> kept = new ArrayList<>();
        String dropped = null;
        try (SafetensorsFile f = SafetensorsFile.open(fs, file)) {
            for (String name : f.entries().keySet()) {
                if (dropped == null && name.endsWith("down_proj.lwc_beta")) {
                    dropped = name;
                    continue;
                }
                float[] v = f.readFloats(name);
                kept.add(SafetensorsWriter.Tensor.floats(name, DType.F32, v, v.length));
            }
        }
        assertTrue(dropped != null, "block 1 learns a down_proj β");
        SafetensorsWriter.write(fs, file, kept, Map.of());

        Path out = tmp.resolve("refused");
        assertOneError(quantize(out, params), "quantize", file.toUri().getPath(), "missing OmniQuant parameter '" + dropped + "'");
        assertNoStore(out);
    }

    /**
     * SmoothQuant's scales (and LET's start) come from the full-precision model's input ranges, taken on the
     * full-precision pass, not from the quantized prefix the block is calibrated on: two recipes whose prefixes
     * differ (3-bit against 8-bit weights) learn block 1's scales bit for bit alike. With the prefix's ranges they
     * differ (checked by hand, passing null ranges in SequentialQuantizeJob).
     */
    @Test
    void smoothingStartsFromTheFullPrecisionStreamNotTheQuantizedPrefix() {
        Map<String, float[]> w3 = smoothQuantScales(3), w8 = smoothQuantScales(8);
        assertTrue(w3.containsKey("smoothquant.attn_scale"), w3.keySet().toString());
        for (String k : w3.keySet()) org.junit.jupiter.api.Assertions.assertArrayEquals(w8.get(k), w3.get(k), k);
    }

    private Map<String, float[]> smoothQuantScales(int wbits) {
        Path params = tmp.resolve("sq-params-" + wbits);
        Run r = EvalCommandTest.run("quantize", "--model", model.toString(), "--calib", calib.toString(), "--nsamples", "4",
                "--seqlen", "16", "--windows-per-task", "2", "--no-eval", "--master", "local[2]", "--method", "smoothquant",
                "--wbits", String.valueOf(wbits), "--abits", "4", "--out", tmp.resolve("sq-" + wbits).toString(),
                "--omni-params", params.toString());
        assertEquals(0, r.code(), r.err());
        return OmniQuantParameterFiles.read(new Configuration(), params.toString(), 1);
    }

    @Test
    void omniParamsNeedOmniQuant() {
        Path out = tmp.resolve("rtn");
        assertOneError(EvalCommandTest.run("quantize", "--model", model.toString(), "--calib", calib.toString(), "--nsamples", "4",
                        "--seqlen", "16", "--no-eval", "--master", "local[2]", "--method", "rtn", "--out", out.toString(),
                        "--omni-params", tmp.resolve("p").toString()),
                "quantize", "--omni-params", "--method omniquant");
        assertNoStore(out);
    }
}
