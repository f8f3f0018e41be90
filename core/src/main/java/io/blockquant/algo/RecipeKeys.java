package io.blockquant.algo;

import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Function;

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
        return typed(key, fallback, "int", Integer::parseInt);
    }

    public long longInteger(String key, long fallback) {
        return typed(key, fallback, "long", Long::parseLong);
    }

    public double number(String key, double fallback) {
        return typed(key, fallback, "double", Double::parseDouble);
    }

    public boolean bool(String key, boolean fallback) {
        return typed(key, fallback, "boolean", v -> {
            if (v.equalsIgnoreCase("true") || v.equalsIgnoreCase("false")) return Boolean.parseBoolean(v);
            throw new IllegalArgumentException("expected true or false");
        });
    }

    /** The key's value read by {@code parse}; a value it refuses is an error naming the flag and the type. */
    private <T> T typed(String key, T fallback, String type, Function<String, T> parse) {
        String v = text(key, null);
        if (v == null) return fallback;
        try {
            return parse.apply(v.trim());
        } catch (IllegalArgumentException e) { // NumberFormatException included
            throw new IllegalArgumentException("--" + key + " '" + v + "' is not a valid " + type + " (" + e.getMessage() + ")", e);
        }
    }

    /** Keys given and not read (sorted). */
    public Set<String> unread() {
        Set<String> out = new TreeSet<>(given.keySet());
        out.removeAll(read);
        return out;
    }
}
