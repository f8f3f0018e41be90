package io.blockquant.gpu;

import io.blockquant.bench.RandomBlocks;
import io.blockquant.bench.RandomBlocks.FastRandom;
import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TextTokenizer;
import io.blockquant.tensor.Backends;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;

/**
 * Writes what the GPU check carries, computed on this machine with the CPU backend:
 * {@code check-inputs.bqa} (model specs, block 0 of each tiny model and tiny-llama's embedding and head, 128×512
 * calibration token ids drawn as {@code quantize} draws them, seeded random inputs) and
 * {@code check-reference.bqa} (the CPU backend's outputs of {@link CheckCases}).
 *
 * <p>{@code GpuCheckReference MODELS_DIR CORPUS_DIR OUT_DIR} (the fixtures: {@code models/tiny-*},
 * {@code corpus/*.train.txt}).
 */
public final class GpuCheckReference {

    private GpuCheckReference() {}

    public static final int CALIB_WINDOWS = 128, CALIB_SEQ = 512;

    public static void main(String[] args) throws IOException {
        if (args.length != 3) {
            System.err.println("usage: GpuCheckReference MODELS_DIR CORPUS_DIR OUT_DIR");
            System.exit(2);
        }
        Path models = Path.of(args[0]), corpus = Path.of(args[1]), out = Path.of(args[2]);
        Files.createDirectories(out);
        ArrayBundle inputs = inputs(models, corpus);
        inputs.write(out.resolve("check-inputs.bqa"));
        long t0 = System.nanoTime();
        Map<String, float[]> ref = CheckCases.compute(Backends.cpu(), inputs, null);
        ArrayBundle reference = new ArrayBundle();
        ref.forEach((name, v) -> reference.putFloats(name, v, v.length));
        reference.write(out.resolve("check-reference.bqa"));
        System.out.printf("wrote %d inputs and %d CPU reference outputs to %s (reference computed in %.1f s)%n",
                inputs.names().size(), ref.size(), out, (System.nanoTime() - t0) / 1e9);
    }

    static ArrayBundle inputs(Path models, Path corpus) throws IOException {
        ArrayBundle b = new ArrayBundle();
        Configuration conf = new Configuration();
        for (String family : CheckCases.FAMILIES) {
            String dir = models.resolve("tiny-" + family).toString();
            ModelSpec spec = ModelSpecReader.read(new org.apache.hadoop.fs.Path(dir), conf);
            b.putBytes("spec/" + family, CheckCases.serialize(spec));
            try (Checkpoint ckpt = Checkpoint.open(dir)) {
                ModelLoader names = new ModelLoader(ckpt, spec, Backends.cpu());
                String block0 = names.blockPrefix(0), blocks = block0.substring(0, block0.length() - "0.".length());
                for (String t : ckpt.tensorNames()) {
                    // block 0 of each family, and tiny-llama's embedding, final norm and head (the GPTQ check embeds its windows)
                    if (!t.startsWith(block0) && !(family.equals("llama") && !t.startsWith(blocks))) continue;
                    b.putFloats(family + "/" + t, ckpt.readFloats(t), ckpt.entry(t).shape());
                }
            }
            int h = spec.hiddenSize(), rows = CheckCases.BATCH * CheckCases.SEQ;
            b.putFloats("x/" + family, new FastRandom(11 + family.hashCode()).uniform((long) rows * h, 1.0), rows, h);
            b.putFloats("target/" + family, new FastRandom(12 + family.hashCode()).uniform((long) rows * h, 1.0), rows, h);
        }
        b.putBytes("spec/llama7b", CheckCases.serialize(RandomBlocks.llama7b(1)));

        // calibration as the quantize command draws it (seed 0) from the three train files
        List<int[]> parts = new ArrayList<>();
        try (TextTokenizer tok = TextTokenizer.load(new org.apache.hadoop.fs.Path(models.resolve("tiny-llama").toString()), conf)) {
            for (String f : List.of("kjv.train.txt", "gcide.train.txt", "fortunes.train.txt")) {
                parts.add(tok.encode(Files.readString(corpus.resolve(f), StandardCharsets.UTF_8)));
            }
        }
        int[] all = parts.stream().flatMapToInt(java.util.Arrays::stream).toArray();
        CalibrationSet calib = CalibrationSet.draw(all, "corpus train files", CALIB_WINDOWS, CALIB_SEQ, 0);
        int[] tokens = new int[CALIB_WINDOWS * CALIB_SEQ];
        for (int i = 0; i < CALIB_WINDOWS; i++) System.arraycopy(calib.windows().get(i), 0, tokens, i * CALIB_SEQ, CALIB_SEQ);
        b.putInts("tokens", tokens, CALIB_WINDOWS, CALIB_SEQ);

        // single operations
        random(b, "ops/a", 1, 1.0, 96, 80);
        random(b, "ops/a2", 2, 1.0, 96, 80);
        random(b, "ops/b", 3, 1.0, 80, 72);
        random(b, "ops/c", 4, 1.0, 96, 72);
        random(b, "ops/d", 5, 1.0, 72, 80);
        random(b, "ops/row", 6, 1.0, 80);
        random(b, "ops/bias", 7, 1.0, 80);
        random(b, "ops/s", 8, 1.0, 6, 32, 16);
        random(b, "ops/t", 9, 1.0, 6, 16, 24);
        random(b, "ops/u", 10, 1.0, 6, 24, 16);
        random(b, "ops/v", 11, 1.0, 6, 32, 24);
        b.putFloats("ops/spd", spd(64, 12), 64, 64);
        random(b, "ops/rhs", 13, 1.0, 64, 20);
        random(b, "svd/tall", 14, 1.0, 80, 48);
        random(b, "svd/wide", 15, 1.0, 48, 80);

        // quantizer input: activations with a few outlier channels, as LLM activations have
        float[] q = new FastRandom(16).uniform(64 * 512, 1.0);
        for (int r = 0; r < 64; r++) for (int c : new int[] {3, 100, 401}) q[r * 512 + c] *= 30f;
        for (int i = 0; i < 512; i++) q[7 * 512 + i] = 0f; // an all-zero row
        b.putFloats("quant/x", q, 64, 512);
        random(b, "quant/dy", 17, 1.0, 64, 512);
        return b;
    }

    private static void random(ArrayBundle b, String name, long seed, double std, long... shape) {
        long n = 1;
        for (long d : shape) n *= d;
        b.putFloats(name, new FastRandom(seed).uniform(n, std), shape);
    }

    /** A well-conditioned symmetric positive-definite matrix {@code A·Aᵀ/n + I}. */
    private static float[] spd(int n, long seed) {
        float[] a = new FastRandom(seed).uniform((long) n * n, 1.0);
        float[] out = new float[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int k = 0; k < n; k++) s += (double) a[i * n + k] * a[j * n + k];
                out[i * n + j] = (float) (s / n + (i == j ? 1 : 0));
            }
        }
        return out;
    }
}
