package io.blockquant.bench;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** What a benchmark run found: rows of one readable table, and the same figures as flat JSON fields. */
public final class BenchReport {

    /** One line of the table; an empty {@code value} makes it a note. */
    public record Row(String section, String what, String value, String note) {}

    private final List<Row> rows = new ArrayList<>();
    private final Map<String, Object> fields = new LinkedHashMap<>();

    public void row(String section, String what, String value, String note) {
        rows.add(new Row(section, what, value, note == null ? "" : note));
    }

    public void note(String section, String text) {
        rows.add(new Row(section, text, "", ""));
    }

    /** A JSON field; doubles are rounded to 4 significant digits, NaN becomes null. */
    public void put(String key, Object value) {
        if (value instanceof Double d) value = Double.isFinite(d) ? Double.valueOf(String.format(Locale.ROOT, "%.4g", d)) : null;
        fields.put(key, value);
    }

    public Object get(String key) {
        return fields.get(key);
    }

    /** Bytes as whole megabytes, "n/a" for a figure that could not be read (negative). */
    public static String megabytes(long bytes) {
        return bytes < 0 ? "n/a" : String.format(Locale.ROOT, "%.0f MB", bytes / 1e6);
    }

    /** Bytes as gigabytes to one decimal, "n/a" for a figure that could not be read (negative). */
    public static String gigabytes(long bytes) {
        return bytes < 0 ? "n/a" : String.format(Locale.ROOT, "%.1f GB", bytes / 1e9);
    }

    public String table() {
        int w1 = "measurement".length(), w2 = "value".length();
        for (Row r : rows) {
            if (r.value().isEmpty()) continue;
            w1 = Math.max(w1, r.what().length());
            w2 = Math.max(w2, r.value().length());
        }
        StringBuilder out = new StringBuilder();
        String section = null;
        String format = "  %-" + w1 + "s  %" + w2 + "s  %s%n";
        for (Row r : rows) {
            if (!r.section().equals(section)) {
                section = r.section();
                out.append(String.format(Locale.ROOT, "%n== %s ==%n", section));
                out.append(String.format(Locale.ROOT, format, "measurement", "value", "note"));
            }
            if (r.value().isEmpty()) out.append("  · ").append(r.what()).append('\n');
            else out.append(String.format(Locale.ROOT, format, r.what(), r.value(), r.note()).stripTrailing()).append('\n');
        }
        return out.toString();
    }

    public String json() {
        try {
            return new ObjectMapper().writeValueAsString(fields);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("benchmark fields are not JSON-writable: " + e.getMessage(), e);
        }
    }
}
