package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.TinyCheckpoint;
import io.blockquant.algo.GptqSettings;
import io.blockquant.algo.LorcSettings;
import io.blockquant.algo.WeightFormat;
import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.spark.SparkSessions;
import io.blockquant.store.StoreReader;
import io.blockquant.store.StoredModel;
import io.blockquant.tensor.Backends;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeSet;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The driver loop's executor seam: sequential GPTQ W3 g64 of a 2-block Llama ({@link TinyCheckpoint}; 8 windows of 64
 * tokens, 2 a task) with its
 * block tasks in this JVM ({@link InProcessBlockExecutor}, 2 threads) writes the same store, to the bit, and records
 * the same errors as with its tasks on Spark's executors ({@code local[2]}); and so does the step that calibrates each
 * block whole in one task ({@link BlockTask}), which sequential mode takes with one slot or on GPUs, also with the
 * GPU's bookkeeping (inputs kept across the block's passes, outputs kept for the next block task) on the CPU.
 */
class InProcessBlockExecutorTest {

    static SparkSession spark;

    @BeforeAll
    static void startSpark() {
        spark = SparkSessions.getOrCreate("in-process-executor-test", "local[2]");
    }

    @AfterAll
    static void stopSpark() {
        spark.stop();
    }

    @Test
    void inProcessTasksWriteTheStoreSparkTasksWrite(@TempDir Path tmp) throws java.io.IOException {
        String model = TinyCheckpoint.llama(2, 5).write(java.nio.file.Files.createDirectories(tmp.resolve("model")), 1).toString();
        ModelSpec spec = ModelSpecReader.read(new org.apache.hadoop.fs.Path(model), spark.sparkContext().hadoopConfiguration());
        QuantizeSettings s = new QuantizeSettings(new GptqSettings(new WeightFormat(new IntQuantSpec(3, 64, false), null), 0.01,
                false, false, LorcSettings.NONE), 0, null, ParallelQuantizeJobTest.WINDOWS, ParallelQuantizeJobTest.SEQ, 0, 2,
                QuantizeSettings.SEQUENTIAL);
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream(), true);

        QuantizeJob.Summary onSpark = QuantizeJob.run(spark, new QuantizeJob.Request(model, tmp.resolve("spark").toString(), s, false),
                ParallelQuantizeJobTest.calibration(), quiet);
        BlockExecutor inProcess = new InProcessBlockExecutor(Backends.cpu(), spark.sparkContext().hadoopConfiguration(), 2);
        QuantizeJob.Summary here = QuantizeJob.run(spark, new QuantizeJob.Request(model, tmp.resolve("here").toString(), s, false),
                spec, ParallelQuantizeJobTest.calibration(), inProcess, quiet);
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        QuantizeJob.Summary oneTask = QuantizeJob.run(spark, new QuantizeJob.Request(model, tmp.resolve("one").toString(), s, false),
                spec, ParallelQuantizeJobTest.calibration(), new InProcessBlockExecutor(Backends.cpu(), spark.sparkContext().hadoopConfiguration(), 1),
                new PrintStream(log, true));
        org.junit.jupiter.api.Assertions.assertTrue(log.toString().contains("each block in one task (one task slot)"), log.toString());
        ByteArrayOutputStream taskErr = new ByteArrayOutputStream();
        PrintStream err = System.err;
        QuantizeJob.Summary resident;
        BlockTask.residentOnCpu = true;
        int readAhead = ExecutorBlocks.blocksFromReadAhead;
        System.setErr(new PrintStream(taskErr, true));
        try {
            resident = QuantizeJob.run(spark, new QuantizeJob.Request(model, tmp.resolve("resident").toString(), s, false), spec,
                    ParallelQuantizeJobTest.calibration(), new InProcessBlockExecutor(Backends.cpu(), spark.sparkContext().hadoopConfiguration(), 1),
                    quiet);
        } finally {
            BlockTask.residentOnCpu = false;
            System.setErr(err);
        }
        org.junit.jupiter.api.Assertions.assertTrue(taskErr.toString().contains("block 2/2 in one task: ") && taskErr.toString()
                .contains("(inputs kept on the device)"), taskErr.toString());
        // block 1 was read from the checkpoint while block 0 calibrated (its store rows below equal the others')
        assertEquals(readAhead + 1, ExecutorBlocks.blocksFromReadAhead, "blocks built from weights read ahead");

        assertEquals(spec.numLayers(), here.blocks().size());
        for (int b = 0; b < spec.numLayers(); b++) {
            QuantizeJob.BlockSummary x = onSpark.blocks().get(b), y = here.blocks().get(b);
            assertFalse(y.skipped());
            assertEquals(x.blockError(), y.blockError(), 0.0, "block " + b + " output error");
            assertEquals(x.layerErrors(), y.layerErrors(), "block " + b + " layer errors");
            assertEquals(x.blockError(), oneTask.blocks().get(b).blockError(), 0.0, "block " + b + " output error in one task");
            // one task takes each layer's error from its group's Hessian, tr(ΔW·Σxᵀx·ΔWᵀ), the spread tasks from a pass over
            // the tokens: the same sums in another order of float32 products
            Map<String, Double> fromHessians = oneTask.blocks().get(b).layerErrors();
            assertEquals(x.layerErrors().keySet(), fromHessians.keySet());
            for (String m : x.layerErrors().keySet()) {
                double measured = x.layerErrors().get(m);
                assertTrue(measured > 0, m);
                assertEquals(measured, fromHessians.get(m), 1e-4 * measured, "block " + b + " " + m + " error from its Hessian");
            }
            assertEquals(fromHessians, resident.blocks().get(b).layerErrors(), "block " + b + " layer errors, inputs kept");
        }
        InMemoryWeights a = StoredModel.read(StoreReader.open(spark, tmp.resolve("spark").toString()), spec);
        InMemoryWeights c = StoredModel.read(StoreReader.open(spark, tmp.resolve("here").toString()), spec);
        assertEquals(a.tensorNames(), c.tensorNames());
        InMemoryWeights one = StoredModel.read(StoreReader.open(spark, tmp.resolve("one").toString()), spec);
        InMemoryWeights kept = StoredModel.read(StoreReader.open(spark, tmp.resolve("resident").toString()), spec);
        assertEquals(a.tensorNames(), one.tensorNames());
        for (String t : new TreeSet<>(a.tensorNames())) {
            assertArrayEquals(a.readFloats(t), c.readFloats(t), 0f, t);
            assertArrayEquals(a.readFloats(t), one.readFloats(t), 0f, t + " (one task per block)");
            assertArrayEquals(a.readFloats(t), kept.readFloats(t), 0f, t + " (one task per block, inputs kept)");
        }
    }
}
