package io.blockquant.algo;

import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The recipe keys a run was given ({@code wbits = 3}, {@code act-order = true}: {@code quantize}'s flag names
 * without the dashes), read by the settings records with their defaults. A value that is not of the key's type
 * is an error naming the flag; {@link #unread} lists keys given but read by no one (a key of another method).
 */
public final class RecipeKeys {

    private final Map<String, String> given;
    private final Set<String> read = new HashSet<>();

    public RecipeKeys(Map<String, String> given) {
        this.given = new LinkedHashMap<>(given);
    }

    public boolean has(String key) {
        read.add(key);
        return given.containsKey(key);
    }

    public String text(String key, String fallback) {
        read.add(key);
        return given.getOrDefault(key, fallback);
    }

    public int integer(String key, int fallback) {
        String v = text(key, null);
        try {
            return v == null ? fallback : Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + key + " '" + v + "' is not a valid int (" + e.getMessage() + ")", e);
        }
    }

    public long longInteger(String key, long fallback) {
        String v = text(key, null);
        try {
            return v == null ? fallback : Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + key + " '" + v + "' is not a valid long (" + e.getMessage() + ")", e);
        }
    }

    public double number(String key, double fallback) {
        String v = text(key, null);
        try {
            return v == null ? fallback : Double.parseDouble(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + key + " '" + v + "' is not a valid double (" + e.getMessage() + ")", e);
        }
    }

    public boolean bool(String key, boolean fallback) {
        String v = text(key, null);
        if (v == null) return fallback;
        if (v.trim().equalsIgnoreCase("true")) return true;
        if (v.trim().equalsIgnoreCase("false")) return false;
        throw new IllegalArgumentException("--" + key + " '" + v + "' is not a valid boolean (expected true or false)");
    }

    /** Keys given and not read (sorted). */
    public Set<String> unread() {
        Set<String> out = new TreeSet<>(given.keySet());
        out.removeAll(read);
        return out;
    }
}
