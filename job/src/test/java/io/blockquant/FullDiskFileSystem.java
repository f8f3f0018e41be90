package io.blockquant;

import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URI;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * The local file system under the scheme {@value #SCHEME}, with a disk that holds only {@link #freeBytes}
 * more bytes: the write that crosses it fails with "No space left on device", as a full disk does.
 * Registered for a Spark session with {@code fs.fullfs.impl}.
 */
public final class FullDiskFileSystem extends RawLocalFileSystem {

    public static final String SCHEME = "fullfs";
    private static final URI NAME = URI.create(SCHEME + ":///");
    private static final AtomicLong FREE = new AtomicLong(Long.MAX_VALUE);

    /** Bytes that may still be written before the disk is full. */
    public static void freeBytes(long bytes) {
        FREE.set(bytes);
    }

    @Override
    public URI getUri() {
        return NAME;
    }

    @Override
    public String getScheme() {
        return SCHEME;
    }

    @Override
    protected OutputStream createOutputStream(Path f, boolean append) throws IOException {
        return new Quota(super.createOutputStream(f, append));
    }

    @Override
    protected OutputStream createOutputStreamWithMode(Path f, boolean append, FsPermission permission) throws IOException {
        return new Quota(super.createOutputStreamWithMode(f, append, permission));
    }

    private static final class Quota extends FilterOutputStream {
        Quota(OutputStream out) {
            super(out);
        }

        private static void take(long n) throws IOException {
            if (FREE.addAndGet(-n) < 0) {
                FREE.set(0);
                throw new IOException("No space left on device");
            }
        }

        @Override
        public void write(int b) throws IOException {
            take(1);
            out.write(b);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            take(len);
            out.write(b, off, len);
        }
    }
}
