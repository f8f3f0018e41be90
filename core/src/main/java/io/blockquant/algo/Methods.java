package io.blockquant.algo;

import io.blockquant.model.Family;
import io.blockquant.quant.ActivationQuant;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The methods {@code quantize} knows, by the recipe's {@code method} name: each with its recipe keys (flag
 * names without dashes), the recipe.json values its keys hold when another method runs, and how its settings
 * are read from the keys. A new method is one line here, its settings record and its calibrator.
 */
public final class Methods {

    private Methods() {}

    /** Reads a method's settings; {@code acts} is the run's activation quantization (NONE: weight-only). */
    interface Parser {
        MethodSettings parse(RecipeKeys keys, Family family, ActivationQuant acts);
    }

    /**
     * One method: its name, its recipe keys, its recipe.json keys' values when absent, its settings parser, and
     * the error when another method is given one of its own keys ({@code %s}: that method's name).
     */
    record Method(String name, Set<String> keys, Map<String, Object> absentRecipe, Parser parser, String foreignKey) {}

    private static final Set<String> FORMAT_KEYS = Set.of("wbits", "group", "sym", "wformat", "scale-constraint",
            "lorc-rank", "lorc-format", "lorc-svd");

    private static final List<Method> ALL = List.of(
            new Method("rtn", FORMAT_KEYS, Map.of(), (k, f, a) -> RtnSettings.parse(k), ""),
            new Method("gptq", with(FORMAT_KEYS, "act-order", "static-groups", "damp"),
                    absent("act_order", false, "static_groups", false, "damp", null, "gptq_block", 0), (k, f, a) -> GptqSettings.parse(k),
                    "--act-order, --static-groups and --damp are GPTQ options, not %s ones"),
            new Method("omniquant", with(FORMAT_KEYS, "lwc", "let", "epochs", "lwc-lr", "let-lr", "batch-size", "aug-loss", "alpha", "let-down"),
                    absent("omniquant", null), OmniQuantSettings::parse,
                    "--lwc, --let, --let-down, --epochs, --lwc-lr, --let-lr, --batch-size and --aug-loss are OmniQuant options; use --method omniquant"),
            new Method("smoothquant", with(FORMAT_KEYS, "alpha"), absent("smoothquant", null), SmoothQuantSettings::parse,
                    "--alpha is a SmoothQuant option; use --method smoothquant"));

    /** Every method's recipe keys. */
    public static Set<String> keys() {
        Set<String> out = new LinkedHashSet<>();
        for (Method m : ALL) out.addAll(m.keys());
        return out;
    }

    /**
     * The settings of the method {@code name} from {@code keys}; a key that belongs to other methods only is an
     * error naming the flag (read the run's keys before calling this).
     */
    public static MethodSettings parse(String name, RecipeKeys keys, Family family, ActivationQuant acts) {
        Method m = ALL.stream().filter(x -> x.name().equals(name)).findFirst().orElseThrow(() -> new IllegalArgumentException(
                "--method '" + name + "' is not known to quantize (expected " + names() + ")"));
        MethodSettings s = m.parser().parse(keys, family, acts);
        for (String key : keys.unread()) {
            List<Method> owners = ALL.stream().filter(x -> x.keys().contains(key)).toList();
            if (owners.isEmpty()) throw new IllegalArgumentException("--" + key + " is not a recipe key");
            if (owners.size() > 1) {
                throw new IllegalArgumentException("--" + key + " is an option of "
                        + String.join(" and ", owners.stream().map(Method::name).toList()) + ", not of " + name);
            }
            throw new IllegalArgumentException(String.format(owners.get(0).foreignKey(), name));
        }
        return s;
    }

    /** recipe.json's keys of every method but {@code name}, with the values they hold when that method does not run. */
    public static Map<String, Object> absentRecipe(String name) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (Method m : ALL) if (!m.name().equals(name)) out.putAll(m.absentRecipe());
        return out;
    }

    private static String names() {
        List<String> n = ALL.stream().map(Method::name).toList();
        return String.join(", ", n.subList(0, n.size() - 1)) + " or " + n.get(n.size() - 1);
    }

    private static Set<String> with(Set<String> base, String... more) {
        Set<String> out = new LinkedHashSet<>(base);
        out.addAll(List.of(more));
        return out;
    }

    private static Map<String, Object> absent(Object... keyValues) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (int i = 0; i < keyValues.length; i += 2) out.put((String) keyValues[i], keyValues[i + 1]);
        return out;
    }
}
