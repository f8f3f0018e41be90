package io.blockquant.cli;

import java.io.IOException;
import java.io.UncheckedIOException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Paths as the user typed them, made to mean the same on every machine of a run. A relative path on the local file
 * system is relative to the directory the command ran in, which is not an executor's (a standalone worker starts
 * its executors in a work folder of its own): such a path is made absolute here, on the driver, before any task
 * sees it and before a store records it. Paths with a scheme, absolute paths, and relative paths of a distributed
 * default file system (relative to the user's home there, the same for every node) are left as they are.
 */
final class UserPaths {

    private UserPaths() {}

    static String absolute(String path, Configuration conf) {
        if (path == null) return null;
        Path p = new Path(path);
        if (p.isAbsolute() || p.toUri().getScheme() != null) return path;
        try {
            FileSystem fs = FileSystem.get(conf);
            if (!(fs instanceof LocalFileSystem)) return path;
            return Path.getPathWithoutSchemeAndAuthority(fs.makeQualified(p)).toString();
        } catch (IOException e) {
            throw new UncheckedIOException(path + ": " + e.getMessage(), e);
        }
    }
}
