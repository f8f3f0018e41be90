package io.blockquant.udfs;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.CRC32C;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Zeppelin notes in {@code notebooks/}: every {@code %sql} paragraph, its form placeholders filled, runs
 * against two model stores written here in the store's layout (as {@link SqlFunctionsTest} does; job's code is
 * not visible from udfs), and returns rows with the columns named below; several are checked against the
 * values written. The {@code %spark} (Scala) paragraphs cannot run here (no Scala compiler, no Zeppelin context):
 * {@link #registerLikeTheScalaParagraph} does in Java what they do, and the test checks that their text makes
 * those same calls. {@code -Dblockquant.notebook.stores=STORE_A,STORE_B} runs the paragraphs against two real
 * stores written by {@code blockquant quantize} as well.
 */
class NotebooksTest {

    static final int ROWS = 8, COLS = 32, BLOCKS = 2;
    static final String[] MODULES = {"self_attn.q_proj", "mlp.down_proj"};

    /** Columns of every %sql paragraph, by paragraph title: a new paragraph needs its line here. */
    static final Map<String, List<String>> COLUMNS = Map.ofEntries(
            Map.entry("Manifest: model, method, calibration, time", List.of("model", "method", "num_blocks",
                    "calibration_windows", "calibration_seqlen", "calibration_tokens", "seconds", "total_bytes", "finished")),
            Map.entry("Recipe", List.of("abits", "act_order", "damp", "gptq_block", "group", "method", "nsamples", "seed",
                    "seqlen", "static_groups", "sym", "wbits")),
            Map.entry("Perplexity (eval.json)", List.of("ppl", "text", "windows", "seqlen", "measured_by", "created")),
            Map.entry("Block output error per block", List.of("block", "relative_output_error")),
            Map.entry("Layer error across blocks, one line per layer", List.of("block", "module", "relative_output_error")),
            Map.entry("Worst layers (with the GPTQ solver loss; NaN for RTN)", List.of("block", "module",
                    "relative_output_error", "gptq_loss", "calibration_tokens")),
            Map.entry("Mean and worst error per layer kind", List.of("module", "mean_error", "max_error", "worst_block")),
            Map.entry("Weight ranges of one block (dequantized, bq_histogram)", List.of("module", "shape", "bits",
                    "group_size", "min", "max", "counts", "relative_output_error")),
            Map.entry("Histogram of one layer", List.of("value", "n")),
            Map.entry("Largest weight magnitude per block and layer (dequantizes the whole model)", List.of("block", "module", "max_abs")),
            Map.entry("Stored bytes per block and kind", List.of("block", "kind", "tensors", "bytes")),
            Map.entry("Manifests", List.of("store", "model", "method", "num_blocks", "calibration_windows",
                    "calibration_seqlen", "seconds", "total_bytes")),
            Map.entry("Recipes", List.of("store", "method", "wbits", "group", "sym", "abits", "act_order", "static_groups",
                    "damp", "nsamples", "seqlen", "seed")),
            Map.entry("Block output error, A and B", List.of("block", "store", "relative_output_error")),
            Map.entry("Block output error side by side", List.of("block", "error_a", "error_b", "ratio_b_a")),
            Map.entry("Layers that changed most", List.of("block", "module", "error_a", "error_b", "ratio_b_a",
                    "gptq_loss_a", "gptq_loss_b")),
            Map.entry("Mean error per layer kind, A and B", List.of("module", "mean_error_a", "mean_error_b")),
            Map.entry("Weights of one block: how far B's dequantized weights are from A's", List.of("module",
                    "relative_difference", "min_a", "max_a", "min_b", "max_b")));

    /** Form values the test sets; every other placeholder takes its default from the paragraph. */
    static final Map<String, String> FORMS = Map.of("block", "1", "module", "mlp.down_proj");

    static SparkSession spark;
    @TempDir static Path dir;
    static Written a, b;

    /** What was written into one store: the dequantized weights and errors to compare the queries with. */
    record Written(Path root, Map<String, float[]> weights, Map<String, Double> errors, double[] blockErrors, int bits) {
        float[] weight(int block, String module) {
            return weights.get(block + "/" + module);
        }
    }

    @BeforeAll
    static void writeStores() throws Exception {
        spark = SparkSession.builder().master("local[2]").appName("notebooks-test")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.shuffle.partitions", "2")
                .config("spark.sql.session.timeZone", "UTC")
                .getOrCreate();
        a = writeStore(dir.resolve("rtn-w4"), "rtn", 4, 0, 11);
        b = writeStore(dir.resolve("gptq-w3"), "gptq", 3, 8, 12);
        // what eval --store records (docs/eval.md); b has none: its view says "not measured"
        Files.writeString(a.root().resolve("eval.json"), "{\"ppl\": 25.0251, \"text\": \"data-samples/corpus/kjv.test.txt\", \"windows\": 112, "
                + "\"seqlen\": 512, \"measured_by\": \"eval --store\", \"created\": \"2026-01-01T00:00:00Z\"}");
    }

    @AfterAll
    static void stop() {
        if (spark != null) spark.stop();
    }

    // ---- the notes ----

    static Path notebooks() {
        Path p = Paths.get("").toAbsolutePath();
        while (p != null && !Files.isDirectory(p.resolve("notebooks"))) p = p.getParent();
        assertNotNull(p, "notebooks/ not found above " + Paths.get("").toAbsolutePath());
        return p.resolve("notebooks");
    }

    record Paragraph(String title, String interpreter, String body) {}

    /** The paragraphs of a .zpln note, after checking the fields Zeppelin 0.10+ needs to import it. */
    static List<Paragraph> paragraphs(String file) throws Exception {
        JsonNode note = new ObjectMapper().readTree(Files.readString(notebooks().resolve(file), StandardCharsets.UTF_8));
        for (String key : List.of("name", "id", "paragraphs", "defaultInterpreterGroup", "version", "config", "info")) {
            assertTrue(note.has(key), file + ": no " + key);
        }
        List<Paragraph> out = new ArrayList<>();
        java.util.Set<String> ids = new java.util.HashSet<>();
        for (JsonNode p : note.get("paragraphs")) {
            for (String key : List.of("id", "text", "config", "settings", "status")) assertTrue(p.has(key), file + ": a paragraph without " + key);
            assertTrue(ids.add(p.get("id").asText()), file + ": paragraph id " + p.get("id") + " twice");
            String text = p.get("text").asText();
            int nl = text.indexOf('\n');
            assertTrue(text.startsWith("%") && nl > 0, file + ": paragraph '" + p.path("title").asText() + "' names no interpreter");
            out.add(new Paragraph(p.path("title").asText(), text.substring(1, nl).trim(), text.substring(nl + 1)));
        }
        return out;
    }

    static final Pattern FORM = Pattern.compile("\\$?\\$\\{([^}=]+)(?:=([^}]*))?}");

    /** Zeppelin's simple forms: {@code ${name=default}} (or {@code ${name=default,a|b}}), note forms {@code $${..}}. */
    static String fillForms(String sql, Map<String, String> values) {
        Matcher m = FORM.matcher(sql);
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            String name = m.group(1).trim();
            String dflt = m.group(2) == null ? null : m.group(2).split(",", 2)[0];
            String v = values.getOrDefault(name, dflt);
            assertNotNull(v, "form ${" + name + "} has no default and the test sets none");
            m.appendReplacement(out, Matcher.quoteReplacement(v));
        }
        return m.appendTail(out).toString();
    }

    /** Runs every %sql paragraph; returns the results by title after checking columns and that rows came back. */
    static Map<String, List<Row>> runSql(String file, List<Paragraph> paragraphs) {
        Map<String, List<Row>> results = new LinkedHashMap<>();
        for (Paragraph p : paragraphs) {
            if (!p.interpreter().equals("sql")) continue;
            List<String> want = COLUMNS.get(p.title());
            assertNotNull(want, file + ": no expected columns for paragraph '" + p.title() + "'");
            Dataset<Row> df;
            try {
                df = spark.sql(fillForms(p.body(), FORMS));
            } catch (RuntimeException e) {
                throw new AssertionError(file + ": paragraph '" + p.title() + "' fails: " + e.getMessage(), e);
            }
            assertEquals(want, List.of(df.columns()), file + ": columns of '" + p.title() + "'");
            List<Row> rows = df.collectAsList();
            assertFalse(rows.isEmpty(), file + ": paragraph '" + p.title() + "' returned no rows");
            results.put(p.title(), rows);
        }
        return results;
    }

    /** What the notes' %spark paragraphs do, in Java: the functions, one store's views under a prefix, its recipe. */
    static void registerLikeTheScalaParagraph(String prefix, Path store) {
        BlockquantUdfs.register(spark);
        BlockquantUdfs.registerStore(spark, store.toString());
        if (!prefix.isEmpty()) {
            for (String view : List.of("tensors", "layer_errors", "manifest")) spark.table(view).createOrReplaceTempView(prefix + "_" + view);
        }
        spark.read().option("multiLine", "true").json(store + "/recipe.json").createOrReplaceTempView(prefix.isEmpty() ? "recipe" : prefix + "_recipe");
        if (!prefix.isEmpty()) return;
        if (Files.exists(store.resolve("eval.json"))) {
            spark.read().option("multiLine", "true").json(store + "/eval.json").createOrReplaceTempView("evaluation");
        } else {
            spark.sql("SELECT CAST(NULL AS DOUBLE) AS ppl, 'not measured' AS text, CAST(NULL AS BIGINT) AS windows, CAST(NULL AS BIGINT) AS seqlen, "
                    + "CAST(NULL AS STRING) AS measured_by, CAST(NULL AS STRING) AS created").createOrReplaceTempView("evaluation");
        }
    }

    static void assertScalaDoes(List<Paragraph> paragraphs, String... calls) {
        List<Paragraph> scala = paragraphs.stream().filter(p -> p.interpreter().equals("spark")).toList();
        assertEquals(1, scala.size(), "one %spark paragraph registers the store(s)");
        for (String call : calls) assertTrue(scala.get(0).body().contains(call), "the %spark paragraph lacks " + call + ":\n" + scala.get(0).body());
    }

    @Test
    void storeOverviewRunsOnAStore() throws Exception {
        List<Paragraph> ps = paragraphs("store-overview.zpln");
        assertScalaDoes(ps, "BlockquantUdfs.register(spark)", "BlockquantUdfs.registerStore(spark, store)",
                "json(store + \"/recipe.json\").createOrReplaceTempView(\"recipe\")",
                "json(store + \"/eval.json\").createOrReplaceTempView(\"evaluation\")", "'not measured' AS text");
        registerLikeTheScalaParagraph("", b.root());
        assertEquals("not measured", spark.sql("SELECT text FROM evaluation").head().getString(0));
        registerLikeTheScalaParagraph("", a.root());
        Map<String, List<Row>> r = runSql("store-overview.zpln", ps);
        assertEquals(11, r.size(), "every %sql paragraph ran");
        Row ppl = r.get("Perplexity (eval.json)").get(0);
        assertEquals(25.0251, ppl.getDouble(0));
        assertEquals("eval --store", ppl.getString(4));

        Row manifest = r.get("Manifest: model, method, calibration, time").get(0);
        assertEquals("tiny-llama", manifest.getString(0));
        assertEquals(4L * 64, manifest.getLong(5));
        assertEquals(4L, r.get("Recipe").get(0).<Long>getAs("wbits"));

        List<Row> blocks = r.get("Block output error per block");
        assertEquals(List.of(RowFactory.create(0, a.blockErrors()[0]), RowFactory.create(1, a.blockErrors()[1])), blocks);
        assertEquals(BLOCKS * MODULES.length, r.get("Layer error across blocks, one line per layer").size());
        Row worst = r.get("Worst layers (with the GPTQ solver loss; NaN for RTN)").get(0);
        assertEquals(a.errors().values().stream().mapToDouble(Double::doubleValue).max().orElseThrow(), worst.getDouble(2));

        // weight ranges of block 1 (the form set above): min and max of the dequantized weights written
        List<Row> ranges = r.get("Weight ranges of one block (dequantized, bq_histogram)");
        assertEquals(MODULES.length, ranges.size());
        for (Row row : ranges) {
            float[] w = a.weight(1, row.getString(0));
            assertEquals(min(w), row.getDouble(4), 0.0, row.getString(0));
            assertEquals(max(w), row.getDouble(5), 0.0, row.getString(0));
            assertEquals((long) w.length, row.<Long>getList(6).stream().mapToLong(Long::longValue).sum());
            assertEquals(a.errors().get("1/" + row.getString(0)), row.getDouble(7));
        }
        List<Row> hist = r.get("Histogram of one layer");
        assertEquals(32, hist.size(), "bins default 32");
        assertEquals(ROWS * COLS, hist.stream().mapToLong(x -> x.getLong(1)).sum(), "every value of block 1 mlp.down_proj once");
        for (Row row : r.get("Largest weight magnitude per block and layer (dequantizes the whole model)")) {
            float[] w = a.weight(row.getInt(0), row.getString(1));
            assertEquals(Math.max(Math.abs(min(w)), Math.abs(max(w))), row.getDouble(2), 0.0);
        }
    }

    @Test
    void compareRecipesRunsOnTwoStores() throws Exception {
        List<Paragraph> ps = paragraphs("compare-recipes.zpln");
        assertScalaDoes(ps, "BlockquantUdfs.register(spark)", "BlockquantUdfs.registerStore(spark, store)",
                "createOrReplaceTempView(prefix + \"_\" + view)", "createOrReplaceTempView(prefix + \"_recipe\")",
                "Seq(\"tensors\", \"layer_errors\", \"manifest\")");
        // A first, then B: A's copied views must keep A's rows after registerStore replaces tensors & co.
        registerLikeTheScalaParagraph("a", a.root());
        registerLikeTheScalaParagraph("b", b.root());
        Map<String, List<Row>> r = runSql("compare-recipes.zpln", ps);
        assertEquals(7, r.size(), "every %sql paragraph ran");

        List<Row> recipes = r.get("Recipes");
        assertEquals(List.of("A", "B"), recipes.stream().map(x -> x.getString(0)).toList());
        assertEquals(List.of(4L, 3L), recipes.stream().map(x -> x.<Long>getAs("wbits")).toList());
        List<Row> side = r.get("Block output error side by side");
        assertEquals(BLOCKS, side.size());
        for (Row row : side) {
            int blk = row.getInt(0);
            assertEquals(a.blockErrors()[blk], row.getDouble(1));
            assertEquals(b.blockErrors()[blk], row.getDouble(2));
            assertEquals(b.blockErrors()[blk] / a.blockErrors()[blk], row.getDouble(3), 1e-12);
        }
        assertEquals(2 * BLOCKS, r.get("Block output error, A and B").size());
        assertEquals(BLOCKS * MODULES.length, r.get("Layers that changed most").size());

        // ||W_b - W_a|| / ||W_a|| of block 1's weights, from the weights written
        for (Row row : r.get("Weights of one block: how far B's dequantized weights are from A's")) {
            float[] wa = a.weight(1, row.getString(0)), wb = b.weight(1, row.getString(0));
            double num = 0, den = 0;
            for (int i = 0; i < wa.length; i++) {
                num += (double) (wb[i] - wa[i]) * (wb[i] - wa[i]);
                den += (double) wa[i] * wa[i];
            }
            assertEquals(Math.sqrt(num / den), row.getDouble(1), 1e-6 * Math.sqrt(num / den));
            assertEquals(min(wa), row.getDouble(2), 0.0);
            assertEquals(max(wb), row.getDouble(5), 0.0);
        }
    }

    @Test
    void bothNotesRunOnRealStores() throws Exception {
        String stores = System.getProperty("blockquant.notebook.stores");
        assumeTrue(stores != null, "set -Dblockquant.notebook.stores=STORE_A,STORE_B (written by blockquant quantize) to run the notes on real stores");
        String[] s = stores.split(",");
        registerLikeTheScalaParagraph("", Paths.get(s[0]));
        assertEquals(10, runSql("store-overview.zpln", paragraphs("store-overview.zpln")).size());
        registerLikeTheScalaParagraph("a", Paths.get(s[0]));
        registerLikeTheScalaParagraph("b", Paths.get(s[1]));
        assertEquals(7, runSql("compare-recipes.zpln", paragraphs("compare-recipes.zpln")).size());
    }

    // ---- the stores ----

    /**
     * A store in the layout quantize writes (job's StoreLayout and BlockRecords): per block a quantized linear per
     * module (qweight packed, scales and zeros float32, g_idx int32), a norm, the layer errors with the
     * {@code <block output>} row; block -1; the manifest and recipe.json with quantize's keys.
     */
    static Written writeStore(Path root, String method, int bits, int group, long seed) throws Exception {
        Random rnd = new Random(seed);
        Map<String, float[]> weights = new HashMap<>();
        Map<String, Double> errors = new HashMap<>();
        double[] blockErrors = new double[BLOCKS];
        int groupSize = group == 0 ? COLS : group;
        for (int block = 0; block < BLOCKS; block++) {
            List<Row> tensors = new ArrayList<>(), layerErrors = new ArrayList<>();
            for (String module : MODULES) {
                DequantizerTest.Linear l = DequantizerTest.Linear.random(ROWS, COLS, bits, groupSize, false, rnd.nextLong());
                int groups = COLS / groupSize;
                tensors.add(row(module, "qweight", "uint" + bits + "-packed", new long[] {ROWS, COLS}, bits, group,
                        "int-asym", l.qweight()));
                tensors.add(row(module, "scales", "float32", new long[] {ROWS, groups}, 0, 0, "fp32", Encodings.floats(l.scales())));
                tensors.add(row(module, "zeros", "float32", new long[] {ROWS, groups}, 0, 0, "fp32", Encodings.floats(l.zerosAsFloats())));
                tensors.add(row(module, "g_idx", "int32", new long[] {COLS}, 0, 0, "int32", Encodings.ints(l.gIdx())));
                weights.put(block + "/" + module, l.expected(l.zerosAsFloats()));
                double e = 0.01 + 0.1 * rnd.nextDouble();
                errors.put(block + "/" + module, e);
                layerErrors.add(RowFactory.create(module, e, method.equals("gptq") ? 10 * e : Double.NaN, 256L));
            }
            tensors.add(row("input_layernorm", "weight", "float32", new long[] {COLS}, 0, 0, "fp32", Encodings.floats(new float[COLS])));
            blockErrors[block] = 0.05 + 0.1 * rnd.nextDouble();
            layerErrors.add(RowFactory.create("<block output>", blockErrors[block], Double.NaN, 256L));
            write(root, tensors, SqlFunctionsTest.TENSORS_FILE, "tensors", block);
            write(root, layerErrors, SqlFunctionsTest.LAYER_ERRORS_FILE, "layer_errors", block);
        }
        write(root, List.of(row("model.norm.weight", "weight", "float32", new long[] {2}, 0, 0, "fp32",
                Encodings.floats(1f, 2f))), SqlFunctionsTest.TENSORS_FILE, "tensors", -1);
        Files.writeString(root.resolve("_manifest.json"), String.format(java.util.Locale.ROOT, """
                {
                  "format_version" : 1,
                  "model_fingerprint" : "sha256:%d",
                  "num_blocks" : %d,
                  "blocks" : [ 0, 1 ],
                  "model_tensors" : true,
                  "total_bytes" : 12345,
                  "created" : "2025-01-01T00:00:00Z",
                  "finished" : "2025-01-01T00:10:00Z",
                  "model" : "tiny-llama",
                  "method" : "%s W%dA16 %s",
                  "calibration_windows" : 4,
                  "calibration_seqlen" : 64,
                  "seconds" : 31.7
                }
                """, seed, BLOCKS, method, bits, group == 0 ? "pc" : "g" + group), StandardCharsets.UTF_8);
        Files.writeString(root.resolve("recipe.json"), String.format(java.util.Locale.ROOT,
                "{\"method\": \"%s\", \"wbits\": %d, \"group\": %d, \"sym\": false, \"abits\": 0, \"act_order\": false, "
                        + "\"static_groups\": false, \"damp\": %s, \"gptq_block\": %d, \"nsamples\": 4, \"seqlen\": 64, \"seed\": 0}",
                method, bits, group, method.equals("gptq") ? "0.01" : "null", method.equals("gptq") ? 128 : 0));
        return new Written(root, weights, errors, blockErrors, bits);
    }

    static Row row(String module, String kind, String dtype, long[] shape, int bits, int groupSize, String format, byte[] data) {
        List<Long> s = new ArrayList<>();
        for (long d : shape) s.add(d);
        CRC32C crc = new CRC32C();
        crc.update(data);
        return RowFactory.create(module, kind, dtype, s, bits, groupSize, format, (long) data.length,
                String.format("%08x", crc.getValue()), data);
    }

    static void write(Path root, List<Row> rows, org.apache.spark.sql.types.StructType schema, String table, int block) {
        spark.createDataFrame(rows, schema).coalesce(1).write().parquet(root.resolve(table).resolve("block=" + block).toString());
    }

    static double min(float[] w) {
        double m = Double.POSITIVE_INFINITY;
        for (float v : w) m = Math.min(m, v);
        return m;
    }

    static double max(float[] w) {
        double m = Double.NEGATIVE_INFINITY;
        for (float v : w) m = Math.max(m, v);
        return m;
    }
}
