package io.blockquant.export;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.UUID;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The folder an export writes: a new or empty folder, or one an earlier blockquant export wrote (it carries
 * {@link #MARKER}); anything else — someone's own checkpoint, a folder of notes — is refused before any work and
 * never touched. The checkpoint is written under a temporary name beside it; an earlier export is moved aside,
 * the new one renamed in, and only then is the old one deleted (moved back if the rename fails), so at every
 * moment the folder holds one whole checkpoint or, for a new folder, nothing.
 */
final class ExportFolder {

    /** The file each export leaves in its folder, naming the store and layout it was written from. */
    static final String MARKER = "blockquant-export.json";

    private ExportFolder() {}

    /** Refuses {@code out} unless it is missing, an empty folder, or an earlier export (one line naming it and the marker). */
    static void checkWritable(FileSystem fs, Path out) throws IOException {
        if (!fs.exists(out)) return;
        FileStatus status = fs.getFileStatus(out);
        if (!status.isDirectory()) {
            throw new IllegalArgumentException(out + " is a file; --out must be a new folder, an empty one, or an earlier blockquant export");
        }
        if (fs.listStatus(out).length == 0 || fs.exists(new Path(out, MARKER))) return;
        throw new IllegalArgumentException(out + " holds files no blockquant export wrote (it has no " + MARKER
                + "); export replaces only its own folders and leaves this one as it is: choose another --out");
    }

    /** The marker's text. */
    static String marker(String store, String layout, String created) {
        return "{\"written_by\": \"blockquant export\", \"store\": \"" + store.replace("\\", "\\\\").replace("\"", "\\\"")
                + "\", \"layout\": \"" + layout + "\", \"created\": \"" + created + "\"}\n";
    }

    static void writeText(FileSystem fs, Path p, String text) throws IOException {
        try (OutputStream o = fs.create(p, true)) {
            o.write(text.getBytes(StandardCharsets.UTF_8));
        }
    }

    /**
     * Puts the complete checkpoint {@code tmp} at {@code out}: renamed in when {@code out} is missing or empty; an
     * earlier export is moved aside first and deleted only after the rename, or moved back when it fails.
     */
    static void install(FileSystem fs, Path tmp, Path out) throws IOException {
        checkWritable(fs, out);  // again: the folder may have changed while the shards were written
        if (!fs.exists(out)) {
            rename(fs, tmp, out);
            return;
        }
        if (fs.listStatus(out).length == 0) {
            if (!fs.delete(out, false)) throw new IOException("cannot replace the empty folder " + out);
            rename(fs, tmp, out);
            return;
        }
        Path aside = new Path(out.getParent(), "." + out.getName() + ".old-" + UUID.randomUUID());
        rename(fs, out, aside);
        try {
            rename(fs, tmp, out);
        } catch (IOException e) {
            if (!fs.exists(out) && fs.rename(aside, out)) throw e;
            throw new IOException(e.getMessage() + "; the earlier export is kept at " + aside, e);
        }
        fs.delete(aside, true);
    }

    private static void rename(FileSystem fs, Path from, Path to) throws IOException {
        if (!fs.rename(from, to)) throw new IOException("cannot rename " + from + " to " + to);
    }
}
