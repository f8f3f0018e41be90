package io.blockquant.model;

import java.io.IOException;
import java.util.UUID;
import org.apache.hadoop.fs.FileContext;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Options;
import org.apache.hadoop.fs.Path;

/**
 * Moves a finished temporary file onto its final name, replacing what is there without deleting it first: a
 * reader sees the old file or the new one, never neither. HDFS renames over atomically ({@code FileContext}
 * with {@code Options.Rename.OVERWRITE}); a local disk's rename(2) replaces atomically too. Where the file system
 * refuses to rename onto an existing file (S3A), the old one is moved aside first ({@code .NAME.replaced-<uuid>})
 * and deleted only once the new one is in place: nothing is lost, though for the moment between the two renames
 * the name itself is empty (a reader fails and the task is retried).
 */
public final class RenameOver {

    private RenameOver() {}

    /** Object stores, where a rename copies every byte and is not atomic, but a new object appears whole on close. */
    public static final java.util.Set<String> COPY_RENAME_SCHEMES = java.util.Set.of("s3a", "s3", "gs", "abfs", "abfss", "oss", "wasb", "wasbs");

    /**
     * True on an object store: there a writer creates its file directly under the final name (the object appears
     * whole when the stream closes) instead of a temporary name plus a rename, which would copy it and leave a
     * moment with no file at all.
     */
    public static boolean copies(FileSystem fs) {
        return COPY_RENAME_SCHEMES.contains(scheme(fs));
    }

    /** The scheme of {@code fs} from its URI: a raw local file system ({@link LocalDisk#unchecked}) does not implement getScheme. */
    private static String scheme(FileSystem fs) {
        return fs.getUri().getScheme();
    }

    public static void move(FileSystem fs, Path src, Path dst) throws IOException {
        if ("hdfs".equals(scheme(fs))) {
            FileContext.getFileContext(fs.getUri(), fs.getConf()).rename(src, dst, Options.Rename.OVERWRITE);
            return;
        }
        try {
            if (fs.rename(src, dst)) return; // absent destination, or a local disk's atomic replace
        } catch (org.apache.hadoop.fs.FileAlreadyExistsException e) {
            // S3A says so instead of returning false
        }
        if (!fs.exists(dst)) throw new IOException("cannot rename " + src + " to " + dst);
        Path aside = new Path(dst.getParent(), "." + dst.getName() + ".replaced-" + UUID.randomUUID());
        if (!fs.rename(dst, aside)) throw new IOException("cannot move " + dst + " aside to replace it");
        if (!fs.rename(src, dst)) {
            fs.rename(aside, dst); // put the old one back: nothing the reader had is lost
            throw new IOException("cannot rename " + src + " to " + dst);
        }
        fs.delete(aside, false);
    }
}
