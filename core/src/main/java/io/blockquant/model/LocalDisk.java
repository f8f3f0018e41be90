package io.blockquant.model;

import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocalFileSystem;

/** The local file system without Hadoop's checksum files. */
public final class LocalDisk {

    private LocalDisk() {}

    /**
     * {@code fs} without its checksum files when it is the local file system (its raw file system: no {@code .NAME.crc}
     * beside each file, no CRC computed over every 512 bytes written); other file systems as they are. For files
     * written once and checked otherwise (activations read back by the same run, an export's shards whose length
     * is checked and which a reader verifies by their own format).
     */
    public static FileSystem unchecked(FileSystem fs) {
        return fs instanceof LocalFileSystem local ? local.getRawFileSystem() : fs;
    }
}
