package io.blockquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.Fixtures;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.schedule.QuantizeSettings;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import picocli.CommandLine;

/** Every recipe under conf/ resolves to the settings its name promises; bad recipes fail naming file and key. */
class RecipeFilesTest {

    static final Path CONF = Fixtures.ROOT.getParent().resolve("conf");

    static Stream<Path> recipes() throws Exception {
        return Files.list(CONF).filter(p -> p.toString().endsWith(".conf") && !p.getFileName().toString().startsWith("spark"))
                .sorted();
    }

    static QuantizeSettings resolve(String... args) throws Exception {
        QuantizeCommand cmd = new QuantizeCommand();
        CommandLine cl = new CommandLine(cmd);
        cl.parseArgs(args);
        if (cmd.recipe != null) cmd.applyRecipe(RecipeFile.read(cmd.recipe, QuantizeCommand.RECIPE_KEYS, new Configuration()));
        ModelSpec spec = ModelSpecReader.read(new org.apache.hadoop.fs.Path(Fixtures.model("tiny-llama").toString()), new Configuration());
        return cmd.settings(spec);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("recipes")
    void recipeResolvesToWhatItsNameSays(Path recipe) throws Exception {
        String name = recipe.getFileName().toString();
        QuantizeSettings s = resolve("--recipe", recipe.toString());
        assertEquals(name.substring(0, name.indexOf('-')).replace("zeroquant", "gptq"), s.method(), name);
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("w(\\d)a(\\d+)").matcher(name);
        assertTrue(m.find(), name);
        assertEquals(Integer.parseInt(m.group(1)), s.weights().bits(), name);
        assertEquals(Integer.parseInt(m.group(2)) == 16 ? 0 : Integer.parseInt(m.group(2)), s.activationBits(), name);
        assertEquals(name.contains("g64"), s.weights().groupSize() == 64, name);
        assertEquals(name.contains("lorc"), s.lorcRank() > 0, name);
        assertEquals(name.startsWith("zeroquant-fp") && !name.contains("-int") && name.contains("w4"), s.fpWeights() != null, name);
        if (name.contains("-m1") || name.contains("-m2")) {
            assertEquals(name.contains("-m1") ? "M1" : "M2", s.fpWeights().constraint().name(), name);
        }
    }

    @Test
    void modeIsSequentialUnlessTheRecipeOrAFlagSaysParallel(@TempDir Path tmp) throws Exception {
        Path parallel = Files.writeString(tmp.resolve("p.conf"), "method = gptq\nmode = parallel\n");
        QuantizeSettings s = resolve("--recipe", parallel.toString());
        assertTrue(s.isParallel());
        assertTrue(s.toJson().contains("\"mode\": \"parallel\""), s.toJson());
        assertEquals(QuantizeSettings.SEQUENTIAL, resolve("--recipe", parallel.toString(), "--mode", "sequential").mode());
        assertEquals(QuantizeSettings.SEQUENTIAL, resolve().mode());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> resolve("--mode", "serial"));
        assertTrue(e.getMessage().contains("--mode 'serial'"), e.getMessage());
    }

    @Test
    void commandLineFlagsWinOverTheRecipe() throws Exception {
        QuantizeSettings s = resolve("--recipe", CONF.resolve("gptq-w4a16-g64.conf").toString(), "--wbits", "3");
        assertEquals(3, s.weights().bits());
        assertEquals(64, s.weights().groupSize());
    }

    @Test
    void badRecipesFailNamingTheFileAndKey(@TempDir Path tmp) throws Exception {
        Path unknown = Files.writeString(tmp.resolve("typo.conf"), "method = gptq\nwbit = 4\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> resolve("--recipe", unknown.toString()));
        assertTrue(e.getMessage().contains("typo.conf") && e.getMessage().contains("unknown recipe key 'wbit'"), e.getMessage());

        Path notInt = Files.writeString(tmp.resolve("bits.conf"), "wbits = four\n");
        e = assertThrows(IllegalArgumentException.class, () -> resolve("--recipe", notInt.toString()));
        assertTrue(e.getMessage().contains("bits.conf") && e.getMessage().contains("'wbits' = 'four'"), e.getMessage());

        for (List<String> bad : List.of(List.of("--wbits", "9"), List.of("--wformat", "fp4", "--wbits", "3"),
                List.of("--aformat", "fp8e4m3", "--abits", "4"), List.of("--method", "awq"),
                List.of("--static-groups"), List.of("--method", "rtn", "--epochs", "3"),
                List.of("--scale-constraint", "m2"), List.of("--kv-bits", "5"), List.of("--kv-format", "fp8", "--kv-bits", "4"),
                List.of("--kv-format", "nf4", "--kv-bits", "4"), List.of("--asym-acts"), List.of("--quant-attn", "--abits", "16"),
                List.of("--asym-acts", "--abits", "8", "--aformat", "fp8e4m3"), List.of("--method", "smoothquant"),
                List.of("--method", "smoothquant", "--abits", "4", "--alpha", "1.5"), List.of("--method", "gptq", "--alpha", "0.6"))) {
            e = assertThrows(IllegalArgumentException.class, () -> resolve(bad.toArray(new String[0])), bad.toString());
            assertTrue(e.getMessage().startsWith("--"), "the message names the flag: " + e.getMessage());
            assertFalse(e.getMessage().contains("\n"), "one line: " + e.getMessage());
        }
        e = assertThrows(IllegalArgumentException.class, () -> resolve("--kv-bits", "5"));
        assertEquals("--kv-bits must be 8 or 4 (16: off), got 5", e.getMessage());
    }

    @Test
    void activationKeysFollowTheReferenceBelow8BitsAndW8A8Above() throws Exception {
        // W4A4 / W6A6: the OmniQuant reference's asymmetric per-token activations and quantized Q, K, V
        for (String bits : new String[] {"4", "6"}) {
            QuantizeSettings s = resolve("--method", "rtn", "--abits", bits);
            assertTrue(s.asymActs() && s.quantAttn(), bits);
            var a = s.activations();
            assertEquals(io.blockquant.quant.TokenQuant.integer(Integer.parseInt(bits), true), a.linearInputs());
            assertEquals(new io.blockquant.quant.AttentionQuant(a.linearInputs(), a.linearInputs(), a.linearInputs()), a.attention());
        }
        // W8A8 keeps the symmetric rule on the linears only (the reference figures' protocol): its results do not move
        QuantizeSettings w8a8 = resolve("--method", "rtn", "--abits", "8");
        assertFalse(w8a8.asymActs() || w8a8.quantAttn());
        assertEquals(new io.blockquant.quant.FakeQuantRecipe(null, 8).activations(), w8a8.activations());
        // the old W4A4 rule on request, and the new one at 8 bits
        QuantizeSettings old = resolve("--method", "rtn", "--abits", "4", "--asym-acts", "false", "--quant-attn=false");
        assertEquals(new io.blockquant.quant.FakeQuantRecipe(null, 4).activations(), old.activations());
        assertTrue(resolve("--method", "rtn", "--abits", "8", "--asym-acts", "--quant-attn").activations().attention().query().asymmetric());
        // a KV cache alone (weight-only linears): K and V per head and token, INT asymmetric or FP8 E4M3
        var kv = resolve("--method", "gptq", "--kv-bits", "4").activations();
        assertNull(kv.linearInputs());
        assertNull(kv.attention().query());
        assertEquals(io.blockquant.quant.TokenQuant.integer(4, true), kv.attention().key());
        assertEquals(kv.attention().key(), kv.attention().value());
        var fp8 = resolve("--method", "rtn", "--kv-bits", "8", "--kv-format", "fp8").activations().attention();
        assertEquals(io.blockquant.quant.TokenQuant.fp8(io.blockquant.quant.FpFormat.E4M3), fp8.value());
        // --kv-bits wins over --abits for K and V; Q keeps the activation bits
        var both = resolve("--method", "rtn", "--abits", "4", "--kv-bits", "8").activations().attention();
        assertEquals(4, both.query().bits());
        assertEquals(8, both.key().bits());
        // OmniQuant learns the query/key scale exactly when queries and keys are quantized
        assertTrue(((io.blockquant.algo.OmniQuantSettings) resolve("--recipe", CONF.resolve("omniquant-w4a4.conf").toString())
                .methodSettings()).config().qkScale());
        assertFalse(((io.blockquant.algo.OmniQuantSettings) resolve("--recipe", CONF.resolve("omniquant-w4a4.conf").toString(),
                "--quant-attn=false").methodSettings()).config().qkScale());
    }

    @Test
    void activationKeysRoundTripThroughTheStoresRecipe() throws Exception {
        var json = new com.fasterxml.jackson.databind.ObjectMapper();
        String[][] runs = {{"--method", "rtn", "--abits", "4"}, {"--method", "rtn", "--abits", "8"},
                {"--method", "smoothquant", "--abits", "6", "--alpha", "0.7"}, {"--method", "rtn", "--kv-bits", "4"},
                {"--method", "rtn", "--kv-bits", "8", "--kv-format", "fp8"}, {"--method", "rtn", "--abits", "4", "--asym-acts=false"},
                {"--method", "rtn", "--abits", "8", "--aformat", "fp8e4m3"}};
        for (String[] run : runs) {
            QuantizeSettings s = resolve(run);
            var recipe = json.readTree(s.toJson());
            // what eval --store applies is what quantize calibrated with
            assertEquals(s.activations(), EvalCommand.activationsOf(recipe).activations(), String.join(" ", run));
            // and the keys --resume compares hold every setting
            assertEquals(s.kvBits(), recipe.get("kv_bits").asInt(), String.join(" ", run));
            assertEquals(s.asymActs(), recipe.get("asym_acts").asBoolean());
            assertEquals(s.quantAttn(), recipe.get("quant_attn").asBoolean());
        }
        assertEquals(0.7, json.readTree(resolve(runs[2]).toJson()).path("smoothquant").path("alpha").asDouble());
        // a store written before these keys existed: symmetric linear inputs only, as it was quantized
        var old = json.readTree("{\"abits\": 4, \"aformat\": \"int\"}");
        assertEquals(new io.blockquant.quant.FakeQuantRecipe(null, 4).activations(), EvalCommand.activationsOf(old).activations());
    }
}
