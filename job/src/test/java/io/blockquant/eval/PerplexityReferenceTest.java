package io.blockquant.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.Fixtures;
import io.blockquant.model.TextTokenizer;
import io.blockquant.quant.FakeQuantRecipe;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.spark.SparkSessions;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code eval} against the reference perplexities of data-samples/perplexity.json (full precision within
 * 0.1 %, RTN and W8A8 within 0.5 %), through the Spark job. By default the CI subset runs (4 evaluations,
 * each one to two minutes on the 2-core CI machine, which a 25-minute limit must hold with everything else): every
 * model in full precision on kjv.test, and tiny-llama with RTN W4 g64; with {@code -Dblockquant.reference=full}
 * every figure of the file (54 evaluations, the other texts and the W3 and W8A8 recipes among them).
 */
class PerplexityReferenceTest {

    static final Map<String, String> FILES = Map.of(
            "kjv.test", "kjv.test.txt", "fortunes.test", "fortunes.test.txt", "gcide.test[:128w]", "gcide.test.txt");
    static final Map<String, FakeQuantRecipe> RECIPES = Map.of(
            "fp", FakeQuantRecipe.NONE,
            "rtn W4A16 pc", new FakeQuantRecipe(new IntQuantSpec(4, 0, false), 0),
            "rtn W4A16 g64", new FakeQuantRecipe(new IntQuantSpec(4, 64, false), 0),
            "rtn W3A16 pc", new FakeQuantRecipe(new IntQuantSpec(3, 0, false), 0),
            "rtn W3A16 g64", new FakeQuantRecipe(new IntQuantSpec(3, 64, false), 0),
            "rtn W8A8 int", new FakeQuantRecipe(new IntQuantSpec(8, 0, false), 8));

    /** The CI subset's quantized figure: one model, one recipe, on kjv.test. */
    static final String CI_MODEL = "tiny-llama", CI_RECIPE = "rtn W4A16 g64";

    static SparkSession spark;

    @BeforeAll
    static void startSpark() {
        spark = SparkSessions.getOrCreate("perplexity-reference-test", "local[2]");
    }

    @AfterAll
    static void stopSpark() {
        spark.stop();
    }

    static Stream<Arguments> figures() throws Exception {
        JsonNode ref = new ObjectMapper().readTree(Files.readString(Fixtures.reference())).get("figures");
        boolean full = "full".equals(System.getProperty("blockquant.reference"));
        List<Arguments> out = new ArrayList<>();
        for (String model : Fixtures.MODELS) {
            for (String recipe : List.of("fp", "rtn W4A16 pc", "rtn W4A16 g64", "rtn W3A16 pc", "rtn W3A16 g64", "rtn W8A8 int")) {
                for (String text : List.of("kjv.test", "fortunes.test", "gcide.test[:128w]")) {
                    boolean ci = text.equals("kjv.test")
                            && (recipe.equals("fp") || model.equals(CI_MODEL) && recipe.equals(CI_RECIPE));
                    if (full || ci) {
                        out.add(Arguments.of(model, recipe, text, ref.get(model).get(recipe).get(text).asDouble(),
                                ref.get(model).get("windows_evaluated").get(text).asInt()));
                    }
                }
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} {1} {2}")
    @MethodSource("figures")
    void reproducesTheReference(String model, String recipe, String text, double expected, int expectedWindows) throws Exception {
        Configuration conf = new Configuration();
        Path dir = new Path(Fixtures.model(model).toUri());
        int[] tokens;
        try (TextTokenizer tok = TextTokenizer.load(dir, conf)) {
            tokens = tok.encode(Files.readString(Fixtures.corpus(FILES.get(text))));
        }
        List<int[]> windows = TokenWindows.split(tokens, 512, 128);
        assertEquals(expectedWindows, windows.size(), "windows evaluated");
        NllSum result = PerplexityJob.run(spark, new PerplexityJob.Request(dir.toString(), RECIPES.get(recipe), 8),
                windows, model + " " + recipe + " " + text, null);
        double ppl = result.perplexity();
        double rel = Math.abs(ppl / expected - 1);
        double tolerance = recipe.equals("fp") ? 0.001 : 0.005;
        System.out.printf("REFERENCE %-12s %-14s %-18s ours %9.4f reference %9.4f  diff %+.4f%%%n",
                model, recipe, text, ppl, expected, 100 * (ppl / expected - 1));
        assertEquals(expectedWindows * 511L, result.tokens());
        assertTrue(rel <= tolerance, String.format("%s %s %s: perplexity %.4f vs reference %.4f (%.3f%% > %.1f%%)",
                model, recipe, text, ppl, expected, 100 * rel, 100 * tolerance));
    }
}
