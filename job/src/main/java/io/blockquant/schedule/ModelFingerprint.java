package io.blockquant.schedule;

import io.blockquant.model.ModelFormatException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HexFormat;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Identifies a checkpoint cheaply, so a store knows which model it holds: SHA-256 over config.json and, per
 * safetensors file, its name, its length and {@value #SAMPLES} pieces of {@value #SAMPLE_BYTES} bytes spread
 * evenly over it. Hashing every weight would read the whole model; name and length alone do not tell a
 * fine-tune from its base model (same config, same shard sizes), while the sampled bytes do, since
 * fine-tuning changes nearly every weight.
 */
final class ModelFingerprint {

    private ModelFingerprint() {}

    static String of(Path modelDir, Configuration conf) {
        try {
            FileSystem fs = modelDir.getFileSystem(conf);
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            try (InputStream in = fs.open(new Path(modelDir, "config.json"))) {
                sha.update(in.readAllBytes());
            }
            FileStatus[] files = fs.listStatus(modelDir, p -> p.getName().endsWith(".safetensors")
                    && !p.getName().startsWith("golden"));
            Arrays.sort(files, Comparator.comparing(f -> f.getPath().getName()));
            for (FileStatus f : files) {
                sha.update((f.getPath().getName() + ":" + f.getLen() + "\n").getBytes(StandardCharsets.UTF_8));
                sampleBytes(fs, f, sha);
            }
            return "sha256:" + HexFormat.of().formatHex(sha.digest());
        } catch (IOException e) {
            throw new ModelFormatException(modelDir + ": cannot read config.json and the safetensors files to fingerprint the model ("
                    + e.getMessage() + ")", e);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    static final int SAMPLES = 16, SAMPLE_BYTES = 4096;

    private static void sampleBytes(FileSystem fs, FileStatus f, MessageDigest sha) throws IOException {
        long len = f.getLen();
        int piece = (int) Math.min(SAMPLE_BYTES, len);
        byte[] buf = new byte[piece];
        try (FSDataInputStream in = fs.open(f.getPath())) {
            for (int i = 0; i < SAMPLES && piece > 0; i++) {
                in.readFully((len - piece) * i / (SAMPLES - 1), buf);
                sha.update(buf);
            }
        }
    }
}
