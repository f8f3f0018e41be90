package io.blockquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
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
                List.of("--scale-constraint", "m2"))) {
            e = assertThrows(IllegalArgumentException.class, () -> resolve(bad.toArray(new String[0])), bad.toString());
            assertTrue(e.getMessage().startsWith("--"), "the message names the flag: " + e.getMessage());
        }
    }
}
