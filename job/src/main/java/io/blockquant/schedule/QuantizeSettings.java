package io.blockquant.schedule;

import io.blockquant.algo.BlockCalibrator;
import io.blockquant.algo.MethodSettings;
import io.blockquant.algo.Methods;
import io.blockquant.algo.RecipeKeys;
import io.blockquant.model.Family;
import io.blockquant.model.ModelSpec;
import io.blockquant.quant.ActivationQuant;
import io.blockquant.quant.FpFormat;
import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.IntQuantSpec;
import java.io.Serializable;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * What {@code quantize} does: the method's settings ({@link Methods}) and the run's, resolved from recipe keys
 * (flags and recipe files) by {@link #parse}, the one place that reads them.
 *
 * @param activationBits   per-token activation bits kept with the model (0 = none); recorded in the recipe
 * @param activationFormat FP8 per-token activations, else null (INT per {@code activationBits}, or none)
 * @param asymActs         INT activations asymmetric (min-max, zero point) rather than symmetric absmax
 * @param quantAttn        attention's queries, keys and values quantized per head and token at the activation bits
 * @param kvBits           the KV cache's bits (keys after RoPE, values; per head and token), 0 = not quantized
 * @param kvFormat         FP8 KV cache, else null (INT, asymmetric)
 * @param windowsPerTask   calibration windows per task (a partition of the block's inputs)
 * @param mode             "sequential" (block i calibrated on the quantized prefix's outputs, the papers' way) or
 *                         "parallel" (every block at once on the full-precision prefix's outputs)
 */
public record QuantizeSettings(MethodSettings methodSettings, int activationBits, FpFormat activationFormat, boolean asymActs,
                               boolean quantAttn, int kvBits, FpFormat kvFormat, int nsamples, int seqlen, long seed,
                               int windowsPerTask, String mode) implements Serializable {

    public static final String SEQUENTIAL = "sequential";
    public static final String PARALLEL = "parallel";

    /** The run's recipe keys; with every method's keys, what a recipe file may hold. */
    private static final Set<String> RUN_KEYS = Set.of("mode", "method", "abits", "aformat", "asym-acts", "quant-attn", "kv-bits",
            "kv-format", "nsamples", "seqlen", "seed");

    /** recipe.json's keys in the order its files have always had them (a new method's keys follow). */
    private static final List<String> RECIPE_ORDER = List.of("method", "wbits", "group", "sym", "abits", "act_order",
            "static_groups", "damp", "gptq_block", "omniquant", "nsamples", "seqlen", "seed", "wformat", "aformat",
            "scale_constraint", "lorc_rank", "lorc_format", "lorc_svd", "mode", "asym_acts", "quant_attn", "kv_bits", "kv_format");

    /** Symmetric INT (or FP8) activations on the linears' inputs only, or none: the settings before quantized attention. */
    public QuantizeSettings(MethodSettings methodSettings, int activationBits, FpFormat activationFormat, int nsamples, int seqlen,
                            long seed, int windowsPerTask, String mode) {
        this(methodSettings, activationBits, activationFormat, false, false, 0, null, nsamples, seqlen, seed, windowsPerTask, mode);
    }

    public QuantizeSettings {
        if (!mode.equals(SEQUENTIAL) && !mode.equals(PARALLEL)) {
            throw new IllegalArgumentException("--mode '" + mode + "' (expected sequential or parallel)");
        }
        if (windowsPerTask < 1) throw new IllegalArgumentException("--windows-per-task must be >= 1, got " + windowsPerTask);
    }

    /** Keys a recipe file may hold: the flags that describe the method and the calibration. */
    public static Set<String> recipeKeys() {
        Set<String> out = new LinkedHashSet<>(RUN_KEYS);
        out.addAll(Methods.keys());
        return out;
    }

    /**
     * The settings from recipe keys ({@link #recipeKeys} and {@code windows-per-task}); every key left out takes
     * its default (gptq W4 per channel, A16, 128 windows of 512 tokens, seed 0, 8 windows per task, sequential).
     */
    public static QuantizeSettings parse(Map<String, String> given, Family family) {
        RecipeKeys keys = new RecipeKeys(given);
        String mode = keys.text("mode", SEQUENTIAL), method = keys.text("method", "gptq");
        int abits = keys.integer("abits", 16);
        if (abits != 16 && (abits < 2 || abits > 8)) throw new IllegalArgumentException("--abits must be 2..8 or 16 (off), got " + abits);
        String aformat = keys.text("aformat", "int");
        FpFormat af = switch (aformat) {
            case "int" -> null;
            case "fp8e4m3", "fp8e5m2" -> {
                if (abits != 8) throw new IllegalArgumentException("--aformat " + aformat + " needs --abits 8, got " + abits);
                yield aformat.equals("fp8e4m3") ? FpFormat.E4M3 : FpFormat.E5M2;
            }
            default -> throw new IllegalArgumentException("--aformat '" + aformat + "' (expected int, fp8e4m3 or fp8e5m2)");
        };
        // the reference's rule below 8 bits (asymmetric, Q/K/V quantized), W8A8's symmetric linear inputs at 8
        boolean ref = abits < 16 && ActivationQuant.referenceRule(abits);
        boolean asym = keys.bool("asym-acts", ref), attn = keys.bool("quant-attn", ref);
        if (abits == 16 && (asym || attn)) {
            throw new IllegalArgumentException("--" + (asym ? "asym-acts" : "quant-attn") + " quantizes activations: it needs --abits 2..8");
        }
        if (asym && af != null) throw new IllegalArgumentException("--asym-acts: --aformat " + aformat + " activations are symmetric; drop one");
        int kvBits = keys.integer("kv-bits", 16);
        if (kvBits != 16 && kvBits != 8 && kvBits != 4) throw new IllegalArgumentException("--kv-bits must be 8 or 4 (16: off), got " + kvBits);
        String kvFormat = keys.text("kv-format", "int");
        FpFormat kvf = switch (kvFormat) {
            case "int" -> null;
            case "fp8" -> {
                if (kvBits != 8) throw new IllegalArgumentException("--kv-format fp8 (E4M3) needs --kv-bits 8, got " + kvBits);
                yield FpFormat.E4M3;
            }
            default -> throw new IllegalArgumentException("--kv-format '" + kvFormat + "' (expected int or fp8)");
        };
        ActivationQuant acts = ActivationQuant.of(abits, af, asym, attn, kvBits == 16 ? 0 : kvBits, kvf);
        int nsamples = keys.integer("nsamples", 128), seqlen = keys.integer("seqlen", 512);
        long seed = keys.longInteger("seed", 0);
        int windowsPerTask = keys.integer("windows-per-task", 8);
        MethodSettings m = Methods.parse(method, keys, family, acts);
        return new QuantizeSettings(m, abits == 16 ? 0 : abits, af, asym, attn, kvBits == 16 ? 0 : kvBits, kvf, nsamples, seqlen,
                seed, windowsPerTask, mode);
    }

    /** What the quantized blocks do to activations at inference (and calibration sees): {@link ActivationQuant#of}. */
    public ActivationQuant activations() {
        return ActivationQuant.of(activationBits == 0 ? 16 : activationBits, activationFormat, asymActs, quantAttn, kvBits, kvFormat);
    }

    public boolean isParallel() {
        return mode.equals(PARALLEL);
    }

    public BlockCalibrator calibrator() {
        return methodSettings.calibrator();
    }

    /** The recipe's method name. */
    public String method() {
        return methodSettings.name();
    }

    public IntQuantSpec weights() {
        return methodSettings.format().levels();
    }

    /** ZeroQuant-FP weight format (FP4/FP8, scale constraint), null for INT weights. */
    public FpQuantSpec fpWeights() {
        return methodSettings.format().fp();
    }

    public int lorcRank() {
        return methodSettings.lorc().rank();
    }

    /** Group sizes must divide every quantized layer's input width: checked before any work starts. */
    public void checkFits(ModelSpec spec) {
        int g = weights().groupSize();
        if (g <= 0) return;
        for (int width : new int[] {spec.hiddenSize(), spec.intermediateSize(), spec.numHeads() * spec.headDim()}) {
            if (width % g != 0) {
                throw new IllegalArgumentException("--group " + g + " does not divide the input width " + width
                        + " of a linear layer of " + spec.describe() + "; choose a divisor of " + width);
            }
        }
    }

    public String label() {
        String a = activationFormat != null ? "A8-" + activationFormat : "A" + (activationBits == 0 ? 16 : activationBits);
        String acts = (asymActs ? " asym-acts" : "") + (quantAttn ? " qkv" : "")
                + (kvBits > 0 ? " kv-" + (kvFormat != null ? "fp8" : "int" + kvBits) : "");
        return method() + " " + methodSettings.format().label(a) + acts + methodSettings.lorc().label() + (isParallel() ? " parallel" : "")
                + methodSettings.options();
    }

    /** The recipe as JSON, written into the store (recipe.json, read by report, export and --resume) and printed at start. */
    public String toJson() {
        Map<String, Object> r = new LinkedHashMap<>();
        for (String key : RECIPE_ORDER) r.put(key, null);
        r.put("method", method());
        r.putAll(methodSettings.format().recipe());
        r.putAll(methodSettings.lorc().recipe());
        r.putAll(Methods.absentRecipe(method()));
        r.putAll(methodSettings.recipe());
        r.put("abits", activationBits);
        r.put("nsamples", nsamples);
        r.put("seqlen", seqlen);
        r.put("seed", seed);
        r.put("aformat", activationFormat == null ? "int" : activationFormat.name().toLowerCase(Locale.ROOT));
        r.put("mode", mode);
        r.put("asym_acts", asymActs);
        r.put("quant_attn", quantAttn);
        r.put("kv_bits", kvBits);
        r.put("kv_format", kvBits == 0 ? null : kvFormat != null ? "fp8" : "int");
        return json(r);
    }

    private static String json(Object v) {
        if (v instanceof Map<?, ?> m) {
            StringBuilder b = new StringBuilder("{");
            m.forEach((k, x) -> b.append(b.length() > 1 ? ", " : "").append('"').append(k).append("\": ").append(json(x)));
            return b.append('}').toString();
        }
        if (v instanceof String s) return '"' + s.replace("\\", "\\\\").replace("\"", "\\\"") + '"';
        return String.valueOf(v);
    }
}
