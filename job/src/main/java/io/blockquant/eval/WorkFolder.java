package io.blockquant.eval;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.UUID;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.SparkContext;

/**
 * Where one eval run keeps its block activations: a fresh {@code eval-<uuid>} folder under a parent, that
 * executors write and read and the driver removes at the end, whatever happened; the parent goes too when
 * the run created it and leaves it empty (a store's {@code _work}).
 */
record WorkFolder(Path path, boolean parentCreated) {

    static WorkFolder create(Configuration conf, Path parent) {
        try {
            FileSystem fs = parent.getFileSystem(conf);
            Path qualified = fs.makeQualified(parent);
            boolean created = !fs.exists(qualified);
            Path path = new Path(qualified, "eval-" + UUID.randomUUID());
            if (!fs.mkdirs(path)) throw new IOException("mkdirs returned false");
            return new WorkFolder(path, created);
        } catch (IOException e) {
            throw new UncheckedIOException(parent + ": cannot make eval's work folder there (" + e.getMessage()
                    + "); choose another with --work", e);
        }
    }

    /**
     * The parent when none is given: {@code spark.local.dir} (else {@code java.io.tmpdir}) in local mode, where
     * driver and executors share a disk; {@code hadoop.tmp.dir} on the default file system on a cluster, a
     * folder every executor reaches.
     */
    static Path defaultParent(SparkContext sc) {
        if (sc.isLocal()) {
            String dirs = sc.getConf().get("spark.local.dir", System.getProperty("java.io.tmpdir"));
            return new Path(new File(dirs.split(",")[0].trim()).getAbsoluteFile().toURI());
        }
        return new Path(sc.hadoopConfiguration().get("hadoop.tmp.dir", "/tmp"));
    }

    /** Deletes the folder and what is in it (and the parent when this run made it and it is empty). */
    void remove(Configuration conf) throws IOException {
        FileSystem fs = path.getFileSystem(conf);
        fs.delete(path, true);
        Path parent = path.getParent();
        if (parentCreated && fs.exists(parent) && fs.listStatus(parent).length == 0) fs.delete(parent, false);
    }
}
