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
 * refuses to rename onto an existing file (S3A), the old one is moved aside first and deleted only once the new
 * one is in place, so both exist until then.
 */
public final class RenameOver {

    private RenameOver() {}

    public static void move(FileSystem fs, Path src, Path dst) throws IOException {
        if ("hdfs".equals(fs.getScheme())) {
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
