package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The work area's activation files: a backend tensor written piece by piece is the file its values on the heap give. */
class ActivationFilesTest {

    @Test
    void aTensorWrittenInChunksIsTheFileOfItsHeapValues(@TempDir Path tmp) throws Exception {
        // 1031 × 4099 floats: 16.9 MB, past one 16 MiB chunk, and no row boundary at the chunk's end
        int rows = 1031, cols = 4099;
        float[] v = new float[rows * cols];
        Random rnd = new Random(3);
        for (int i = 0; i < v.length; i++) v[i] = (float) rnd.nextGaussian();
        ActivationFiles acts = new ActivationFiles(tmp.toString(), null);
        Configuration conf = new Configuration();
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try (Tensor t = Nd4jBackend.INSTANCE.fromFloats(v, rows, cols)) {
            org.apache.hadoop.fs.Path fromTensor = acts.writeInBackground(pool, conf, 1, 0, t).join();
            org.apache.hadoop.fs.Path fromHeap = acts.writeInBackground(pool, conf, 1, 1, v, rows, cols).join();
            byte[] a = Files.readAllBytes(Path.of(fromTensor.toUri().getPath())), b = Files.readAllBytes(Path.of(fromHeap.toUri().getPath()));
            assertEquals(8 + 4L * v.length, a.length, "header and float32 values");
            assertArrayEquals(b, a, "the same bytes from the tensor and from the heap");
            int[] shape = new int[2];
            assertArrayEquals(v, acts.read(conf, 1, 0, shape), "read back");
            assertArrayEquals(new int[] {rows, cols}, shape);
        } finally {
            pool.shutdownNow();
        }
        try (var files = Files.list(tmp.resolve("acts/block-0001"))) {
            assertEquals(2, files.filter(f -> !f.getFileName().toString().startsWith(".")).count(), "no temporary file left");
        }
    }
}
