package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.spark.KryoClasses;
import io.blockquant.spark.StandaloneCluster;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole path a user runs — {@code quantize} (RTN and GPTQ), {@code eval --store}, {@code eval --model},
 * {@code export --format gptq} — on a model with a real Llama-3 vocabulary (128256 rows), once with 2 blocks
 * and once with 4, each command in a JVM of its own (as the launcher runs it, local Spark: driver and
 * executor are that JVM) under one fixed heap (2 GB). The test fails when a JVM's peak live heap (the largest heap
 * left after a garbage collection, from the JVM's own GC log) grows from 2 to 4 blocks by more than the two
 * added blocks plus 256 MB of measured GC noise, or reaches the whole model's float32 size (1.2 GB): before this
 * test, every JVM held the embedding and head as float32 and eval held the whole model.
 *
 * <p>A benchmark with a bound, not part of CI's run: twelve JVMs take about ten minutes of a 2-core machine. Run it with
 * {@code mvn -B test -pl job -Dtest=MemoryScaleTest -Dblockquant.memory=true}; it prints its table of peaks.
 *
 * <p>Sizes: vocabulary 128256 (Llama-3's), hidden 1024 (a quarter of
 * Llama-3-8B's, so the embedding and head are 131 M values each, 0.5 GB in float32, split into 16 MiB parts in
 * the store), 8 heads / 2 KV heads, MLP 2048: a block is 8.4 M parameters, 34 MB in float32.
 */
class MemoryScaleTest {

    private static final String HEAP = "2g"; // GPTQ's down_proj Hessian task: 2048² float64 sum + float32 XᵀX, two at once
    private static final long BLOCK_BYTES = 4L * (2L * 1024 * 1024 + 2L * 1024 * 256 + 3L * 1024 * 2048);

    @Test
    @EnabledIfSystemProperty(named = "blockquant.memory", matches = "true")
    void noJvmGrowsWithTheNumberOfBlocks(@TempDir Path tmp) throws Exception {
        Map<String, Long> two = run(tmp.resolve("two"), 2);
        Map<String, Long> four = run(tmp.resolve("four"), 4);
        StringBuilder table = new StringBuilder(String.format(Locale.ROOT, "%-14s %12s %12s%n", "command", "2 blocks MB", "4 blocks MB"));
        two.forEach((cmd, peak) -> table.append(String.format(Locale.ROOT, "%-14s %12d %12d%n", cmd, peak >> 20, four.get(cmd) >> 20)));
        System.out.print(table);
        // a JVM that held the model would need its float32 weights: the blocks, the embedding and the head
        long model = 4 * BLOCK_BYTES + 2L * 128256 * 1024 * 4;
        for (String cmd : two.keySet()) {
            long growth = four.get(cmd) - two.get(cmd);
            // measured noise of the after-GC peaks between runs: up to about 220 MB either way (G1's young pauses
            // count old-generation garbage not yet collected), so the bound is the two added blocks plus 256 MB
            assertTrue(growth < 2 * BLOCK_BYTES + (256L << 20), cmd + ": the peak live heap grew by " + (growth >> 20)
                    + " MB from 2 to 4 blocks (one block is " + (BLOCK_BYTES >> 20) + " MB)\n" + table);
            assertTrue(four.get(cmd) < model, cmd + ": a peak live heap of " + (four.get(cmd) >> 20) + " MB, as much as the"
                    + " whole model's float32 weights (" + (model >> 20) + " MB)\n" + table);
        }
    }

    /** Every command of the path on a fresh {@code blocks}-block model; the peak live heap of each JVM. */
    private static Map<String, Long> run(Path dir, int blocks) throws Exception {
        Files.createDirectories(dir);
        Path model = dir.resolve("model"), store = dir.resolve("store-gptq"), text = dir.resolve("eval.txt");
        // a short text: the head is 131 M multiply-adds per token
        Path corpus = classesDir().getParent().getParent().getParent().resolve("data-samples").resolve("corpus");
        Files.writeString(text, Files.readString(corpus.resolve("kjv.test.txt")).substring(0, 20_000));
        Map<String, Long> peaks = new LinkedHashMap<>();
        cli(dir, "synth", "synth", "--shape", "llama-3-8b", "--blocks", String.valueOf(blocks), "--hidden", "1024",
                "--heads", "8", "--kv-heads", "2", "--intermediate", "2048", "--vocab", "128256", "--out", model.toString());
        String[] calib = {"--nsamples", "4", "--seqlen", "64", "--windows-per-task", "2", "--no-eval"};
        peaks.put("quantize rtn", cli(dir, "rtn", concat(new String[] {"quantize", "--model", model.toString(), "--method", "rtn",
                "--wbits", "4", "--group", "128", "--out", dir.resolve("store-rtn").toString()}, calib)));
        peaks.put("quantize gptq", cli(dir, "gptq", concat(new String[] {"quantize", "--model", model.toString(), "--method", "gptq",
                "--wbits", "4", "--group", "128", "--out", store.toString()}, calib)));
        String[] eval = {"--text", text.toString(), "--seqlen", "64", "--max-windows", "4", "--windows-per-task", "2"};
        peaks.put("eval --store", cli(dir, "eval-store", concat(new String[] {"eval", "--store", store.toString()}, eval)));
        peaks.put("eval --model", cli(dir, "eval-model", concat(new String[] {"eval", "--model", model.toString()}, eval)));
        peaks.put("export gptq", cli(dir, "export", "export", "--store", store.toString(), "--format", "gptq",
                "--out", dir.resolve("ckpt").toString()));
        return peaks;
    }

    private static String[] concat(String[] a, String[] b) {
        String[] out = new String[a.length + b.length];
        System.arraycopy(a, 0, out, 0, a.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    private static final Pattern AFTER_GC = Pattern.compile("->(\\d+)M\\(");

    /** Runs the CLI in a JVM of its own; returns the largest heap left after a collection (bytes). */
    private static long cli(Path dir, String name, String... args) throws IOException, InterruptedException {
        Path gc = dir.resolve(name + ".gc.log"), log = dir.resolve(name + ".log");
        List<String> cmd = new ArrayList<>();
        cmd.add(Paths.get(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xmx" + HEAP);
        cmd.add("-Xlog:gc:file=" + gc);
        cmd.addAll(StandaloneCluster.jvmOptions());
        Path classes = classesDir();
        // the repository (job/target/classes/../../..): its data-samples are the defaults (tokenizer, calibration text)
        cmd.add("-Dblockquant.home=" + classes.getParent().getParent().getParent());
        cmd.add("-cp");
        cmd.add(classes + ":" + io.blockquant.spark.StandaloneCluster.coreClasses() + ":" + classes.getParent().resolve("spark-home").resolve("jars") + "/*");
        cmd.add("io.blockquant.cli.Main");
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().put("OMP_NUM_THREADS", "1");
        int code = pb.start().waitFor();
        assertEquals(0, code, String.join(" ", args) + " failed:\n" + tail(log));
        long peak = 0;
        Matcher m = AFTER_GC.matcher(Files.readString(gc));
        while (m.find()) peak = Math.max(peak, Long.parseLong(m.group(1)) << 20);
        return peak;
    }

    private static String tail(Path log) throws IOException {
        String s = Files.readString(log);
        return s.substring(Math.max(0, s.length() - 4000));
    }

    private static Path classesDir() {
        try {
            return Paths.get(KryoClasses.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }
}
