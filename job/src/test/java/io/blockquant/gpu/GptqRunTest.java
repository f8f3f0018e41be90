package io.blockquant.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.Fixtures;
import io.blockquant.cli.EvalCommandTest;
import io.blockquant.spark.SparkSessions;
import io.blockquant.tensor.Nd4jBackend;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link GptqRun} is {@code quantize --method gptq} without Spark: on the CPU backend it must measure the
 * perplexity that {@code quantize --eval-text} measures, to the printed digit, for a recipe that exercises
 * every part of the pipeline (FP4 weights with the M2 scale constraint, FP8 activations, Hessian-weighted
 * LoRC), so that its GPU runs stand for the job's figures.
 */
class GptqRunTest {

    @TempDir
    Path tmp;

    @Test
    void measuresWhatQuantizeMeasures() throws Exception {
        Path model = Fixtures.model("tiny-llama");
        Path calib = Fixtures.shortCalibrationText(tmp);
        String kjv = Files.readString(Fixtures.corpus("kjv.test.txt"), StandardCharsets.UTF_8);
        Path eval = Files.writeString(tmp.resolve("eval.txt"), kjv.substring(0, 6_000));
        Path inputs = tmp.resolve("inputs.bqa");
        RunInputs.main(new String[] {inputs.toString(), "4", "64", "0,1", calib.toString(), eval.toString(), model + "=llama"});

        SparkSessions.getOrCreate("gptq-run-test", "local[2]");
        EvalCommandTest.Run q = EvalCommandTest.run("quantize", "--model", model.toString(), "--calib", calib.toString(),
                "--nsamples", "4", "--seqlen", "64", "--seed", "1", "--method", "gptq", "--wbits", "4", "--group", "64",
                "--wformat", "fp4", "--scale-constraint", "m2", "--abits", "8", "--aformat", "fp8e4m3", "--lorc-rank", "4",
                "--lorc-svd", "hessian", "--eval-text", eval.toString(), "--json", "--master", "local[2]",
                "--out", tmp.resolve("store").toString());
        assertEquals(0, q.code(), q.err());
        Matcher m = Pattern.compile("\"ppl\": ([0-9.]+)").matcher(q.out().strip().lines().reduce((a, b) -> b).orElseThrow());
        assertTrue(m.find(), q.out());

        ArrayBundle in = ArrayBundle.read(inputs);
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        double ppl = GptqRun.run(Nd4jBackend.INSTANCE, in, "tokens/1", "llama", CheckCases.spec(in, "llama"),
                GptqRun.settings("llama:fp4:64:fp8e4m3:m2:4h:1", 4, 64), new PrintStream(log, true, StandardCharsets.UTF_8));
        assertEquals(m.group(1), String.format(Locale.ROOT, "%.6f", ppl), log.toString(StandardCharsets.UTF_8));
        assertTrue(Double.parseDouble(m.group(1)) > 1, "a perplexity");
    }

    @Test
    void aConfigurationNamesWhatItGot() {
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> GptqRun.settings("llama:int4:64:int8:m2:0", 4, 64));
        assertTrue(e.getMessage().contains("llama:int4:64:int8:m2:0") && e.getMessage().contains("FP weights"), e.getMessage());
        e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> GptqRun.settings("llama:int4:sixty:int8:none:0", 4, 64));
        assertTrue(e.getMessage().contains("llama:int4:sixty:int8:none:0") && e.getMessage().contains("sixty"), e.getMessage());
    }
}
