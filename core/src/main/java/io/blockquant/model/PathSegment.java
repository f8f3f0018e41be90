package io.blockquant.model;

/**
 * A name read from data (a shard named by an index, a tensor or file name kept in a model store) that
 * becomes, or may one day become, a single path segment under a root folder. Such a name must never lead
 * outside that root: no separators, no {@code ..}, no {@code scheme:} (a Hadoop path parses {@code s3a:x} as
 * another file system), no control characters.
 */
public final class PathSegment {

    private PathSegment() {}

    /** Why {@code name} is not a plain path segment, or null when it is one. */
    public static String problem(String name) {
        if (name == null || name.isEmpty()) return "is empty";
        if (name.equals(".") || name.contains("..")) return "contains '..' or is '.'";
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            if (c == '/' || c == '\\') return "contains the path separator '" + c + "'";
            if (c == ':') return "contains ':' (a URI scheme or a drive)";
            if (c < 0x20 || c == 0x7f) return "contains a control character";
        }
        return null;
    }
}
