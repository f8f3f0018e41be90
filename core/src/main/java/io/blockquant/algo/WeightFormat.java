package io.blockquant.algo;

import io.blockquant.quant.FpFormat;
import io.blockquant.quant.FpQuantSpec;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.ScaleConstraint;
import java.io.Serializable;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * How a quantized weight is stored: {@code levels} (bits, group of input columns, symmetry), and for
 * ZeroQuant-FP's floating-point weights the FP format and its scale constraint ({@code fp}; null: INT levels).
 */
public record WeightFormat(IntQuantSpec levels, FpQuantSpec fp) implements Serializable {

    /** Keys {@code wbits}, {@code group}, {@code sym}, {@code wformat}, {@code scale-constraint}. */
    static WeightFormat parse(RecipeKeys keys) {
        int wbits = keys.integer("wbits", 4), group = keys.integer("group", 0);
        if (wbits < 2 || wbits > 8) throw new IllegalArgumentException("--wbits must be 2..8, got " + wbits);
        if (group < 0) throw new IllegalArgumentException("--group must be 0 (per channel) or a positive size, got " + group);
        IntQuantSpec levels = new IntQuantSpec(wbits, group, keys.bool("sym", false));
        String wformat = keys.text("wformat", "int"), constraint = keys.text("scale-constraint", "none");
        FpQuantSpec fp = switch (wformat) {
            case "int" -> {
                if (!constraint.equals("none")) throw new IllegalArgumentException("--scale-constraint applies to FP weights (--wformat fp4|fp8)");
                yield null;
            }
            case "fp4", "fp8" -> {
                int need = wformat.equals("fp4") ? 4 : 8;
                if (wbits != need) throw new IllegalArgumentException("--wformat " + wformat + " is " + need + " bits wide; got --wbits " + wbits);
                ScaleConstraint c = switch (constraint) {
                    case "none" -> ScaleConstraint.NONE;
                    case "m1" -> ScaleConstraint.M1;
                    case "m2" -> ScaleConstraint.M2;
                    default -> throw new IllegalArgumentException("--scale-constraint '" + constraint + "' (expected none, m1 or m2)");
                };
                yield new FpQuantSpec(need == 4 ? FpFormat.E2M1 : FpFormat.E4M3, group, c);
            }
            default -> throw new IllegalArgumentException("--wformat '" + wformat + "' (expected int, fp4 or fp8)");
        };
        return new WeightFormat(levels, fp);
    }

    public boolean isFp() {
        return fp != null;
    }

    /** {@code W4A16 g64 sym}, {@code W4-E2M1A8-E4M3 g64 M2}: bits and format, the activations', grouping, symmetry, constraint. */
    public String label(String activations) {
        return "W" + levels.bits() + (fp == null ? "" : "-" + fp.format()) + activations
                + (levels.perChannel() ? " pc" : " g" + levels.groupSize())
                + (levels.symmetric() && fp == null ? " sym" : "")
                + (fp != null && fp.constraint() != ScaleConstraint.NONE ? " " + fp.constraint() : "");
    }

    /** Recipe keys (the flags' names with underscores) in recipe.json's order. */
    public Map<String, Object> recipe() {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("wbits", levels.bits());
        r.put("group", Math.max(0, levels.groupSize()));
        r.put("sym", levels.symmetric());
        r.put("wformat", fp == null ? "int" : fp.format().name().toLowerCase(Locale.ROOT));
        r.put("scale_constraint", fp == null ? "none" : fp.constraint().name().toLowerCase(Locale.ROOT));
        return r;
    }
}
