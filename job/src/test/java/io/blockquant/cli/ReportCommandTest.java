package io.blockquant.cli;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.Fixtures;
import io.blockquant.spark.SparkSessions;
import io.blockquant.store.LayerError;
import io.blockquant.store.StoreReader;
import io.blockquant.store.TensorRecord;
import java.awt.image.BufferedImage;
import java.io.File;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import javax.imageio.ImageIO;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.xpath.XPathConstants;
import javax.xml.xpath.XPathFactory;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;
import org.xml.sax.InputSource;

/**
 * {@code report} on stores written by the real pipeline (tiny-llama, RTN, a few calibration windows): the page's
 * numbers are compared with the store's own rows read through {@link StoreReader}, and the page is rendered in
 * headless Chromium to check that the browser draws it.
 */
class ReportCommandTest {

    static final int BLOCKS = 8; // tiny-llama
    static final int LINEARS = 7; // q, k, v, o, gate, up, down

    @TempDir static Path tmp;
    static Path w4, w8;
    static SparkSession spark;
    static final ObjectMapper JSON = new ObjectMapper();

    @BeforeAll
    static void quantizeTwoStores() throws Exception {
        w4 = quantize("rtn-w4", 4);
        // w8 with quantize's final eval (windows of 32 tokens to keep it to seconds): it records eval.json itself
        Path out = tmp.resolve("rtn-w8");
        EvalCommandTest.Run r = EvalCommandTest.run("quantize", "--model", Fixtures.model("tiny-llama").toString(),
                "--method", "rtn", "--wbits", "8", "--nsamples", "4", "--seqlen", "64",
                "--windows-per-task", "2", "--eval-seqlen", "32", "--out", out.toString(), "--master", "local[2]");
        assertEquals(0, r.code(), r.err());
        w8 = out;
        var record = JSON.readTree(w8.resolve("eval.json").toFile());
        assertEquals("quantize", record.get("measured_by").asText());
        assertEquals(32, record.get("seqlen").asInt());
        assertEquals(128, record.get("windows").asInt(), "57,685 tokens of kjv.test hold 1802 windows of 32; quantize scores at most 128");
        assertTrue(r.out().contains(String.format(java.util.Locale.ROOT, "perplexity on kjv.test.txt: %.4f", record.get("ppl").asDouble())), r.out());
        spark = SparkSessions.getOrCreate("report-test", "local[2]");
    }

    @AfterAll
    static void stop() {
        if (spark != null) spark.stop();
    }

    static Path quantize(String name, int bits) {
        Path out = tmp.resolve(name);
        EvalCommandTest.Run r = EvalCommandTest.run("quantize", "--model", Fixtures.model("tiny-llama").toString(),
                "--method", "rtn", "--wbits", String.valueOf(bits), "--nsamples", "4", "--seqlen", "64",
                "--windows-per-task", "2", "--no-eval", "--out", out.toString(), "--master", "local[2]");
        assertEquals(0, r.code(), r.err());
        return out;
    }

    static Document report(Path html, String... extra) throws Exception {
        List<String> args = new ArrayList<>(List.of("report", "--master", "local[2]", "--out", html.toString()));
        args.addAll(List.of(extra));
        EvalCommandTest.Run r = EvalCommandTest.run(args.toArray(String[]::new));
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("written to"), r.out());
        String text = Files.readString(html, StandardCharsets.UTF_8);
        assertFalse(text.contains("<script"), "the page must not need scripts");
        assertFalse(text.matches("(?s).*(src|href)=\"https?:.*"), "the page must fetch nothing");
        // the page is written to parse as XML: a strict parser stands in for "well formed"
        var dbf = DocumentBuilderFactory.newInstance();
        dbf.setFeature("http://apache.org/xml/features/nonvalidating/load-external-dtd", false);
        return dbf.newDocumentBuilder().parse(new InputSource(new StringReader(text)));
    }

    static NodeList nodes(Document doc, String xpath) throws Exception {
        return (NodeList) XPathFactory.newInstance().newXPath().evaluate(xpath, doc, XPathConstants.NODESET);
    }

    static String text(Document doc, String xpath) throws Exception {
        return XPathFactory.newInstance().newXPath().evaluate(xpath, doc);
    }

    static List<Double> dataValues(NodeList rects) {
        List<Double> out = new ArrayList<>();
        for (int i = 0; i < rects.getLength(); i++) out.add(Double.parseDouble(((Element) rects.item(i)).getAttribute("data-value")));
        return out;
    }

    /** Block output errors, ascending by block, and the per-linear rows, as the store holds them. */
    static List<Double> blockErrors(StoreReader store) {
        List<Double> out = new ArrayList<>();
        for (LayerError e : store.layerErrors()) if (e.module().equals("<block output>")) out.add(e.relativeOutputError());
        return out;
    }

    @Test
    void reportOfOneStoreShowsItsRecipeErrorsAndWeights() throws Exception {
        Document doc = report(tmp.resolve("w4.html"), "--store", w4.toString());
        StoreReader store = StoreReader.open(spark, w4.toString());

        // the keys the report and the notebooks read: a change in quantize's store breaks here first
        Map<String, Object> manifest = store.manifest();
        for (String key : List.of("model", "method", "num_blocks", "calibration_windows", "calibration_seqlen", "seconds")) {
            assertTrue(manifest.containsKey(key), "manifest lacks " + key + ": " + manifest);
        }
        assertEquals(BLOCKS, ((Number) manifest.get("num_blocks")).intValue());

        // one bar per block, holding exactly the stored block output error
        List<Double> expected = blockErrors(store);
        assertEquals(BLOCKS, expected.size());
        assertEquals(expected, dataValues(nodes(doc, "//svg[@id='block-errors']/rect[contains(@class,'bar')]")));

        // the heatmap: a cell per block and linear, values as stored, in the store's (block, module) order
        List<LayerError> linears = store.layerErrors().stream().filter(e -> !e.module().equals("<block output>")).toList();
        assertEquals(BLOCKS * LINEARS, linears.size());
        List<Double> cells = dataValues(nodes(doc, "//svg[@id='layer-heatmap']/rect[@class='cell']"));
        assertEquals(BLOCKS * LINEARS, cells.size());
        assertEquals(linears.stream().map(LayerError::relativeOutputError).sorted().toList(), cells.stream().sorted().toList());
        assertEquals(BLOCKS * LINEARS, nodes(doc, "//table[@id='layer-table']/tbody/tr").getLength());
        // RTN has no solver loss: the table says so with a dash, not NaN
        assertFalse(text(doc, "//table[@id='layer-table']").contains("NaN"));

        // the recipe as recipe.json holds it
        Map<?, ?> recipe = new ObjectMapper().readValue(store.readJson("recipe.json"), Map.class);
        assertEquals("rtn", recipe.get("method"));
        for (Map.Entry<?, ?> e : recipe.entrySet()) {
            String shown = text(doc, "//table[@class='recipe']/tr[th='" + e.getKey() + "']/td");
            String want = e.getValue() == null ? "\u2013" : String.valueOf(e.getValue());
            assertEquals(want, shown, "recipe key " + e.getKey());
        }
        assertTrue(text(doc, "//section[@id='facts']").contains("4 windows \u00d7 64 tokens"), text(doc, "//section[@id='facts']"));
        assertTrue(text(doc, "//section[@id='perplexity']/p[@class='not-measured']").startsWith("not measured"),
                text(doc, "//section[@id='perplexity']"));

        // histograms: the worst layer first, every value of the weight counted once
        LayerError worst = linears.stream().max((a, b) -> Double.compare(a.relativeOutputError(), b.relativeOutputError())).orElseThrow();
        assertEquals(4, nodes(doc, "//section[@id='histograms']//figure").getLength());
        assertTrue(text(doc, "(//section[@id='histograms']//figcaption)[1]").contains("block " + worst.block() + " " + worst.module()));
        long elements = 1;
        for (TensorRecord t : store.tensors(worst.block())) {
            if (t.module().equals(worst.module()) && t.kind().equals("qweight")) elements = t.elements();
        }
        long counted = 0;
        NodeList bars = nodes(doc, "//svg[@id='hist-0']/rect[@class='hist-bar']");
        for (int i = 0; i < bars.getLength(); i++) {
            String title = bars.item(i).getTextContent();
            counted += Long.parseLong(title.substring(title.lastIndexOf(": ") + 2));
        }
        assertTrue(elements > 1000, "a weight of tiny-llama has 256×256 values or more");
        assertEquals(elements, counted);
    }

    @Test
    void compareShowsBothStoresBlockByBlock() throws Exception {
        Document doc = report(tmp.resolve("compare.html"), "--store", w4.toString(), "--compare", w8.toString());
        List<Double> a = blockErrors(StoreReader.open(spark, w4.toString()));
        List<Double> b = blockErrors(StoreReader.open(spark, w8.toString()));
        assertEquals(a, dataValues(nodes(doc, "//svg[@id='compare-block-errors']/rect[@class='bar a']")));
        assertEquals(b, dataValues(nodes(doc, "//svg[@id='compare-block-errors']/rect[@class='bar b']")));
        for (int i = 0; i < BLOCKS; i++) {
            assertTrue(b.get(i) < a.get(i), "8-bit weights err less than 4-bit ones in block " + i + ": " + b.get(i) + " vs " + a.get(i));
        }
        assertEquals(BLOCKS + 1, nodes(doc, "//table[@id='compare-table']/tbody/tr").getLength());
        // perplexity: B has the eval.json its quantize run (or the eval --store test) wrote, A has none
        double ppl = storedPpl(w8);
        assertEquals("not measured", text(doc, "//table[@id='compare-table']/tbody/tr[@class='total']/td[2]"));
        assertShown(ppl, text(doc, "//table[@id='compare-table']/tbody/tr[@class='total']/td[3]"));
        // the recipes differ in wbits only
        NodeList differs = nodes(doc, "//table[@id='compare-recipes']/tbody/tr[@class='differs']/td[1]");
        assertEquals(1, differs.getLength());
        assertEquals("wbits", differs.item(0).getTextContent());
        // B alone: its stored perplexity is shown
        Document only = report(tmp.resolve("w8.html"), "--store", w8.toString());
        assertShown(ppl, text(only, "//p[@class='ppl']"));
        assertTrue(text(only, "//section[@id='perplexity']//tr[th='text']/td").endsWith("kjv.test.txt"));
    }

    /** The perplexity in a store's eval.json (read when asked: a test may have re-measured it). */
    static double storedPpl(Path store) throws Exception {
        return JSON.readTree(store.resolve("eval.json").toFile()).get("ppl").asDouble();
    }

    /** A number the page shows (four significant digits) is {@code expected}. */
    static void assertShown(double expected, String shown) {
        assertEquals(expected, Double.parseDouble(shown), Math.abs(expected) * 1e-3, shown);
    }

    @Test
    void evalStoreRecordsItsPerplexityInTheStoreAndTheReportShowsIt() throws Exception {
        EvalCommandTest.Run r = EvalCommandTest.run("eval", "--store", w8.toString(), "--max-windows", "2", "--seqlen", "64",
                "--master", "local[2]", "--json");
        assertEquals(0, r.code(), r.err());
        var printed = JSON.readTree(r.out().strip().lines().reduce((a, b) -> b).orElseThrow());
        var record = JSON.readTree(w8.resolve("eval.json").toFile());
        assertEquals("eval --store", record.get("measured_by").asText());
        assertEquals(printed.get("ppl").asDouble(), record.get("ppl").asDouble(), 1e-6);
        assertEquals(2, record.get("windows").asInt());
        assertEquals(126, record.get("scored_tokens").asLong());
        assertTrue(record.get("protocol").asText().contains("64 tokens"), record.toString());
        try (var files = Files.list(w8)) {
            assertEquals(List.of(), files.map(f -> f.getFileName().toString()).filter(f -> f.contains(".tmp-")).toList(), "no temporary file left");
        }
        Document only = report(tmp.resolve("w8-measured.html"), "--store", w8.toString());
        assertShown(storedPpl(w8), text(only, "//p[@class='ppl']"));
        assertEquals("eval --store", text(only, "//section[@id='perplexity']//tr[th='measured_by']/td"));
    }

    @Test
    void chromiumDrawsThePage() throws Exception {
        assumeTrue(onPath("chromium"), "chromium is not on PATH: install it (apt-get install -y chromium) to check "
                + "that the report renders; the page's structure is still checked by the other tests");
        Path html = tmp.resolve("render.html");
        report(html, "--store", w4.toString());
        Path png = tmp.resolve("render.png");
        Path profile = Files.createDirectories(tmp.resolve("chromium-profile"));
        Process p = new ProcessBuilder("chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--hide-scrollbars", "--user-data-dir=" + profile, "--screenshot=" + png, "--window-size=1200,2000",
                html.toUri().toString())
                .redirectErrorStream(true).redirectOutput(tmp.resolve("chromium.log").toFile()).start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail("chromium did not finish in 120 s: " + Files.readString(tmp.resolve("chromium.log")));
        }
        assertTrue(Files.exists(png), "no screenshot; chromium said: " + Files.readString(tmp.resolve("chromium.log")));
        BufferedImage img = ImageIO.read(png.toFile());
        assertEquals(1200, img.getWidth());
        long nonWhite = 0, barBlue = 0;
        for (int y = 0; y < img.getHeight(); y++) {
            for (int x = 0; x < img.getWidth(); x++) {
                int rgb = img.getRGB(x, y) & 0xffffff;
                if (rgb != 0xffffff) nonWhite++;
                if (near(rgb, 0x3b6ea8)) barBlue++;
            }
        }
        long pixels = (long) img.getWidth() * img.getHeight();
        assertTrue(nonWhite > pixels / 50, "the screenshot is nearly blank: " + nonWhite + " of " + pixels + " pixels not white");
        // the block-error bars are drawn in their color: text and tables alone do not make this many
        assertTrue(barBlue > 5000, "only " + barBlue + " pixels in the bar color #3b6ea8: the SVG charts were not drawn");
    }

    @Test
    void missingStoreIsOneClearError() {
        EvalCommandTest.Run r = EvalCommandTest.run("report", "--store", tmp.resolve("nope").toString(), "--master", "local[2]",
                "--out", tmp.resolve("nope.html").toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("nope: no such model store"), r.err());
        assertFalse(Files.exists(tmp.resolve("nope.html")), "no page for a store that is not there");
    }

    static boolean near(int rgb, int want) {
        for (int shift : new int[] {16, 8, 0}) {
            if (Math.abs(((rgb >> shift) & 0xff) - ((want >> shift) & 0xff)) > 3) return false;
        }
        return true;
    }

    static boolean onPath(String program) {
        String path = System.getenv("PATH");
        if (path == null) return false;
        for (String dir : path.split(File.pathSeparator)) if (Files.isExecutable(Path.of(dir, program))) return true;
        return false;
    }
}
