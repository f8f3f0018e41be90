package io.blockquant.store;

import io.blockquant.model.ModelFormatException;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * How a store replaces one of its small files ({@code _manifest.json}, {@code _store.json}, {@code recipe.json},
 * the model's config) so that a crash between any two steps leaves one whole version to read. Never
 * delete-then-rename; the old file stays until the new one is in place:
 * <ol>
 *   <li>write {@code NAME.next} (the whole new content);</li>
 *   <li>rename {@code NAME} to {@code NAME.prev} (skipped when there is no old file);</li>
 *   <li>rename {@code NAME.next} to {@code NAME};</li>
 *   <li>delete {@code NAME.prev}.</li>
 * </ol>
 * A reader ({@link #readable}) takes {@code NAME} when present; without it, {@code NAME.next} only when
 * {@code NAME.prev} is there too (step 2 runs after step 1 finished, so that {@code .next} is whole). The
 * writer ({@link #repair}, under the store's lease) finishes step 3 or drops a half-written {@code .next}.
 * Each step is one rename or one write on every file system (a rename of a small object on S3 is a copy and
 * a delete, and either order of those still matches one of the states above).
 */
public final class FileReplace {

    public static final String NEXT = ".next";
    public static final String PREV = ".prev";

    /** Test hook: the replace stops (as a crashed driver would) after this step, 1..3; 0 = never. */
    static volatile int crashAfterStep = 0;

    private FileReplace() {}

    /** Replaces (or creates) {@code target} with {@code bytes} by the four steps above. */
    public static void replace(FileSystem fs, Path target, byte[] bytes) {
        Path next = sibling(target, NEXT), prev = sibling(target, PREV);
        try {
            repair(fs, target);
            fs.mkdirs(target.getParent());
            try (OutputStream out = fs.create(next, true)) {
                out.write(bytes);
            }
            crash(1, target);
            boolean hadOld = fs.exists(target);
            if (hadOld && !fs.rename(target, prev)) throw new IOException("cannot rename " + target + " to " + prev);
            crash(2, target);
            if (!fs.rename(next, target)) throw new IOException("cannot rename " + next + " to " + target);
            crash(3, target);
            if (hadOld) fs.delete(prev, false);
        } catch (IOException e) {
            throw new UncheckedIOException(target + ": cannot write (" + e.getMessage() + "); the previous version, if any, "
                    + "is kept beside it", e);
        }
    }

    private static void crash(int step, Path target) {
        if (crashAfterStep == step) throw new IllegalStateException("fault injected after step " + step + " of replacing " + target);
    }

    /**
     * The file holding {@code target}'s current content: {@code target}, or {@code target.next} after a crash
     * between steps 2 and 3; null when there is none (never written, or only a half-written {@code .next}).
     */
    public static Path readable(FileSystem fs, Path target) {
        try {
            if (fs.exists(target)) return target;
            Path next = sibling(target, NEXT);
            boolean hasPrev = fs.exists(sibling(target, PREV));
            if (hasPrev && fs.exists(next)) return next;
            if (hasPrev) {
                throw new ModelFormatException(target + " is missing and only its old version " + sibling(target, PREV).getName()
                        + " remains (an interrupted replace); rename it to " + target.getName() + " or re-run with --resume");
            }
            return null;
        } catch (IOException e) {
            throw new UncheckedIOException(target + ": cannot check (" + e.getMessage() + ")", e);
        }
    }

    /**
     * Finishes or undoes an interrupted replace of {@code target} (the writer's side, under the lease): a whole
     * {@code .next} is renamed into place, a half-written one deleted, a leftover {@code .prev} deleted.
     */
    public static void repair(FileSystem fs, Path target) {
        Path next = sibling(target, NEXT), prev = sibling(target, PREV);
        try {
            boolean hasTarget = fs.exists(target), hasNext = fs.exists(next), hasPrev = fs.exists(prev);
            if (!hasTarget && hasPrev) {
                if (!hasNext) {
                    // step 3 was a copy that got as far as deleting .next: cannot happen on one rename; refuse clearly
                    throw new ModelFormatException(target + " is missing and only the old version " + prev
                            + " remains; rename it to " + target.getName() + " to go back to it");
                }
                if (!fs.rename(next, target)) throw new IOException("cannot rename " + next + " to " + target);
                hasNext = false;
            }
            if (hasNext) fs.delete(next, false);
            if (hasPrev) fs.delete(prev, false);
        } catch (IOException e) {
            throw new UncheckedIOException(target + ": cannot repair an interrupted replace (" + e.getMessage() + ")", e);
        }
    }

    static Path sibling(Path target, String suffix) {
        return new Path(target.getParent(), target.getName() + suffix);
    }
}
