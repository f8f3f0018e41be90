package io.blockquant.eval;

import io.blockquant.model.EmbeddingRows;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.Fixtures;
import io.blockquant.TinyCheckpoint;
import io.blockquant.algo.RtnQuantizer;
import io.blockquant.cli.EvalCommandTest;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TensorRows;
import io.blockquant.model.TextTokenizer;
import io.blockquant.nn.CausalLm;
import io.blockquant.quant.FakeQuantRecipe;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.spark.SparkSessions;
import io.blockquant.store.StoreLayout;
import io.blockquant.store.StoreReader;
import io.blockquant.store.StoredModel;
import io.blockquant.tensor.Nd4jBackend;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The block-by-block perplexity job against a model held whole: the same sums to the last bit with the head
 * in one chunk, the whole head's float64 NLL within 1e-9 with the head in several; a store scored as its
 * dequantized model; the work folder gone after a run and after a failed one.
 */
class BlockwisePerplexityTest {

    static SparkSession spark;

    @BeforeAll
    static void start() {
        spark = SparkSessions.getOrCreate("blockwise-perplexity-test", "local[2]");
    }

    @AfterAll
    static void stop() {
        spark.stop();
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"tiny-llama", "tiny-opt"}) // an lm_head of its own; a head tied to the embedding, learned positions
    void oneChunkIsTheWholeModelAndChunksAgree(String name, @TempDir Path tmp) throws Exception {
        org.apache.hadoop.fs.Path dir = new org.apache.hadoop.fs.Path(Fixtures.model(name).toUri());
        List<int[]> windows = windows(dir, 64, 5);
        FakeQuantRecipe recipe = new FakeQuantRecipe(new IntQuantSpec(4, 64, false), 8);
        Path work = tmp.resolve("work");
        var request = new PerplexityJob.Request(new CheckpointSource(dir.toString()), recipe, 2, work.toString());

        NllSum oneChunk = PerplexityJob.run(spark, request, windows, name, null, PerplexityJob.HEAD_CHUNK_BYTES);
        // 1000 vocabulary rows of 256 floats a chunk: 5 chunks over the 4096 rows, the last of 96
        NllSum chunked = PerplexityJob.run(spark, request, windows, name, null, 1000L * 256 * 4);

        NllSum whole, wholeFloat64;
        try (Checkpoint ckpt = Checkpoint.open(dir, new Configuration())) {
            CausalLm model = RtnQuantizer.apply(new ModelLoader(ckpt, spec(dir), Nd4jBackend.INSTANCE).model(), recipe);
            whole = byPartition(model, windows, 2, false);
            wholeFloat64 = byPartition(model, windows, 2, true);
        }
        assertEquals(whole.nll(), oneChunk.nll(), 0.0, "one chunk: the whole model's arithmetic, bit for bit");
        assertEquals(whole.tokens(), oneChunk.tokens());
        assertEquals(5 * 63, chunked.tokens());
        // float64 sums of float32 logits: a head product split into 1000-row chunks may round a logit's last bit otherwise
        // than the whole product, as OpenBLAS blocks it for the machine (2.1e-9 and 2.5e-9 relative on one CPU, 0 on another)
        assertEquals(wholeFloat64.nll(), chunked.nll(), 1e-7 * wholeFloat64.nll(), "chunks: the whole head's NLL in float64");
        // the one-chunk path sums each row's 4096 exponentials in float32 (the reference protocol's arithmetic)
        assertEquals(oneChunk.nll(), chunked.nll(), 1e-5 * oneChunk.nll());
        assertFalse(Files.exists(work), "the run made the work folder's parent and removes it: " + listing(tmp));
    }

    @Test
    void aStoreScoresAsItsDequantizedModel(@TempDir Path tmp) throws Exception {
        Path model = TinyCheckpoint.llama(2, 1).write(Files.createDirectories(tmp.resolve("model")), 1);
        Path store = tmp.resolve("store");
        var q = EvalCommandTest.run("quantize", "--model", model.toString(), "--calib",
                Fixtures.shortCalibrationText(tmp).toString(), "--nsamples", "4", "--seqlen", "16", "--method", "rtn",
                "--wbits", "4", "--abits", "8", "--no-eval", "--out", store.toString(), "--master", "local[2]");
        assertEquals(0, q.code(), q.err());
        StoreReader reader = StoreReader.open(spark, store.toString());
        ModelSpec spec = ModelSpecReader.read(reader.modelDir(), new Configuration());
        List<int[]> windows = windows(reader.modelDir(), 32, 7);
        FakeQuantRecipe a8 = new FakeQuantRecipe(null, 8);

        NllSum blockwise = PerplexityJob.run(spark, new PerplexityJob.Request(
                StoreSource.of(reader, new Configuration()), a8, 3, null), windows, "store", null);

        CausalLm whole = RtnQuantizer.apply(new ModelLoader(StoredModel.read(reader, spec), spec, Nd4jBackend.INSTANCE).model(), a8);
        assertEquals(byPartition(whole, windows, 3, false).nll(), blockwise.nll(), 0.0);
        assertFalse(Files.exists(store.resolve(StoreLayout.WORK)), "STORE/_work left behind: " + listing(store));

        // the same store as format 1 wrote it (no part column), rewritten through Spark (every column optional)
        for (int block = -1; block < spec.numLayers(); block++) {
            Path dir = store.resolve("tensors/block=" + block), rewritten = tmp.resolve("rewritten");
            spark.read().schema(StoreLayout.TENSORS_FILE_SCHEMA).parquet(dir.toString()).drop("part")
                    .coalesce(1).write().parquet(rewritten.toString());
            deleteTree(dir);
            Files.move(rewritten, dir);
        }
        NllSum formatOne = PerplexityJob.run(spark, new PerplexityJob.Request(StoreSource.of(reader, new Configuration()), a8, 3, null),
                windows, "store", null);
        assertEquals(blockwise.nll(), formatOne.nll(), 0.0);
    }

    private static void deleteTree(Path dir) throws Exception {
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(java.util.Comparator.reverseOrder()).toList()) Files.delete(p);
        }
    }

    @Test
    void theWorkFolderGoesAfterAFailure(@TempDir Path tmp) throws Exception {
        Path model = TinyCheckpoint.llama(3, 1).poke("model.layers.1.mlp.down_proj.weight", 7, Float.NaN)
                .write(Files.createDirectories(tmp.resolve("model")), 1);
        Path work = Files.createDirectories(tmp.resolve("work"));
        List<int[]> windows = windows(new org.apache.hadoop.fs.Path(model.toUri()), 16, 4);
        ByteArrayOutputStream progress = new ByteArrayOutputStream();
        var request = new PerplexityJob.Request(new CheckpointSource(model.toUri().toString()), FakeQuantRecipe.NONE, 1, work.toString());

        Exception e = assertThrows(Exception.class, () -> PerplexityJob.run(spark, request, windows, "nan",
                new PrintStream(progress, true, StandardCharsets.UTF_8)));
        assertTrue(messages(e).contains("model.layers.1.mlp.down_proj.weight' holds 1 NaN/Inf"), messages(e));
        assertTrue(progress.toString(StandardCharsets.UTF_8).contains("block 1/3"), "block 0's outputs were written");
        assertEquals(List.of(""), listing(work), "the run's folder is removed, the given parent kept");
    }

    @Test
    void embeddingRowsAreTheTablesRowsEachReadOnce() {
        int width = 3;
        List<long[]> reads = new ArrayList<>();
        TensorRows table = new TensorRows() {
            public String name() { return "table"; }
            public long rows() { return 10; }
            public long cols() { return width; }
            public float[] readRows(long from, int count) {
                reads.add(new long[] {from, count});
                float[] v = new float[count * width];
                for (int i = 0; i < v.length; i++) v[i] = (from + i / width) * 10 + i % width;
                return v;
            }
        };
        int[] ids = {5, 3, 4, 5, 0, 9, 3};
        float[] rows = EmbeddingRows.gather(table, ids);
        for (int k = 0; k < ids.length; k++) {
            for (int c = 0; c < width; c++) assertEquals(ids[k] * 10 + c, rows[k * width + c], 0f);
        }
        assertEquals(List.of("0+1", "3+3", "9+1"), reads.stream().map(r -> r[0] + "+" + r[1]).toList());
    }

    @Test
    void chunksLogSumExpsCombineToTheRowsOne() {
        Random rnd = new Random(7);
        float[] row = new float[1000];
        for (int i = 0; i < row.length; i++) row[i] = (float) (40 * rnd.nextGaussian());
        int[] bounds = {0, 1, 300, 999, 1000};
        double[][] chunks = new double[bounds.length - 1][];
        for (int c = 0; c < chunks.length; c++) {
            chunks[c] = HeadScores.rowLogSumExp(Arrays.copyOfRange(row, bounds[c], bounds[c + 1]), 1, bounds[c + 1] - bounds[c]);
        }
        assertEquals(HeadScores.rowLogSumExp(row, 1, row.length)[0], HeadScores.combine(chunks)[0], 1e-12);
    }

    /**
     * A model held whole scored over the job's partitions (Spark's slicing), summed in partition order;
     * {@code float64}: each row's log-sum-exp reduced in float64 from the float32 logits.
     */
    private static NllSum byPartition(CausalLm model, List<int[]> windows, int perTask, boolean float64) {
        int n = windows.size(), tasks = (n + perTask - 1) / perTask;
        NllSum sum = null;
        for (int i = 0; i < tasks; i++) {
            List<int[]> part = windows.subList((int) ((long) i * n / tasks), (int) ((long) (i + 1) * n / tasks));
            NllSum s = float64 ? float64(model, part) : WindowScorer.score(model, part);
            sum = sum == null ? s : sum.plus(s);
        }
        return sum;
    }

    private static NllSum float64(CausalLm model, List<int[]> windows) {
        int[][] batch = windows.toArray(new int[0][]);
        int[] targets = WindowScorer.targets(batch);
        var logits = model.forward(batch);
        double[] lse = HeadScores.rowLogSumExp(logits.toFloats(), (int) logits.size(0), (int) logits.size(1));
        return WindowScorer.nll(lse, Nd4jBackend.INSTANCE.pickPerRow(logits, targets), batch.length, batch[0].length);
    }

    private static List<int[]> windows(org.apache.hadoop.fs.Path modelDir, int seqlen, int count) throws Exception {
        String text = Files.readString(Fixtures.corpus("kjv.test.txt")).substring(0, 20_000);
        try (TextTokenizer tok = TextTokenizer.load(modelDir, new Configuration())) {
            return TokenWindows.split(tok.encode(text), seqlen, count);
        }
    }

    private static ModelSpec spec(org.apache.hadoop.fs.Path dir) {
        return ModelSpecReader.read(dir, new Configuration());
    }

    private static String messages(Throwable e) {
        StringBuilder s = new StringBuilder();
        for (Throwable t = e; t != null && s.length() < 100_000; t = t.getCause() == t ? null : t.getCause()) {
            s.append(t.getMessage()).append('\n');
        }
        return s.toString();
    }

    private static List<String> listing(Path dir) throws Exception {
        if (!Files.exists(dir)) return List.of();
        try (Stream<Path> s = Files.walk(dir)) {
            return s.map(p -> dir.relativize(p).toString()).sorted().toList();
        }
    }
}
