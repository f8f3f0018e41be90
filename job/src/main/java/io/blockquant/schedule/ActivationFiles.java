package io.blockquant.schedule;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Block activations between stages, one file per (block, partition) in the store's work area:
 * {@code _work/acts/block-0003/part-00007.f32}, a little-endian header (rows, cols) then row-major float32.
 * Executors write and read them directly; the driver never holds activations.
 */
public record ActivationFiles(String workDir) implements Serializable {

    public Path path(int block, int partition) {
        return new Path(workDir, String.format("acts/block-%04d/part-%05d.f32", block, partition));
    }

    public void write(Configuration conf, int block, int partition, float[] values, int rows, int cols) throws IOException {
        Path p = path(block, partition);
        Path tmp = new Path(p.getParent(), "." + p.getName() + ".tmp");
        FileSystem fs = p.getFileSystem(conf);
        ByteBuffer buf = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        buf.asFloatBuffer().put(values);
        try {
            try (FSDataOutputStream out = fs.create(tmp, true)) {
                DataOutputStream d = new DataOutputStream(out);
                d.writeInt(rows);
                d.writeInt(cols);
                d.write(buf.array());
            }
            fs.delete(p, false);
            if (!fs.rename(tmp, p)) throw new IOException("cannot rename " + tmp + " to " + p);
        } catch (IOException e) {
            // inside a task: the message is all the driver will see of where the write failed
            try {
                fs.delete(tmp, false);
            } catch (IOException ignored) {
                // the write error below is the one to report
            }
            throw new IOException(p + ": cannot write block " + block + "'s activations (" + e.getMessage() + ")", e);
        }
    }

    /** {rows, cols} in {@code shape}, the values returned. */
    public float[] read(Configuration conf, int block, int partition, int[] shape) throws IOException {
        Path p = path(block, partition);
        FileSystem fs = p.getFileSystem(conf);
        try (FSDataInputStream in = fs.open(p)) {
            DataInputStream d = new DataInputStream(in);
            shape[0] = d.readInt();
            shape[1] = d.readInt();
            byte[] bytes = new byte[shape[0] * shape[1] * 4];
            d.readFully(bytes);
            float[] v = new float[shape[0] * shape[1]];
            ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(v);
            return v;
        }
    }

    /** Marks block {@code block}'s inputs as whole: every partition written (the driver does this after the job). */
    public void markComplete(Configuration conf, int block) throws IOException {
        Path marker = new Path(workDir, String.format("acts/block-%04d/_COMPLETE", block));
        marker.getFileSystem(conf).create(marker, true).close();
    }

    /** True when block {@code block}'s inputs were all written by a job that finished. */
    public boolean isComplete(Configuration conf, int block) throws IOException {
        Path marker = new Path(workDir, String.format("acts/block-%04d/_COMPLETE", block));
        return marker.getFileSystem(conf).exists(marker);
    }

    /** Block {@code block}'s inputs as the partitions {@code parts}, in that order, read as a step asks for them. */
    public BlockStep.Inputs inputs(Configuration conf, int block, java.util.List<Integer> parts) {
        return new BlockStep.Inputs() {
            @Override
            public int partitions() {
                return parts.size();
            }

            @Override
            public float[] read(int p, int[] shape) throws IOException {
                return ActivationFiles.this.read(conf, block, parts.get(p), shape);
            }
        };
    }

    public void deleteBlock(Configuration conf, int block) throws IOException {
        Path dir = new Path(workDir, String.format("acts/block-%04d", block));
        dir.getFileSystem(conf).delete(dir, true);
    }
}
