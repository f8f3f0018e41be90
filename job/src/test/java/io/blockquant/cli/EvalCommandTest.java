package io.blockquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.Fixtures;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The eval command as a user runs it: help, JSON output, and one clear error line for bad input. */
public class EvalCommandTest {

    /** A command line's exit code and what it printed; shared by the tests that drive {@link Main}. */
    public record Run(int code, String out, String err) {}

    public static Run run(String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        try {
            int code = Main.execute(args);
            return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    @Test
    void helpListsTheFlags() {
        Run r = run("eval", "--help");
        assertEquals(0, r.code());
        for (String flag : new String[] {"--model", "--text", "--seqlen", "--max-windows", "--method", "--wbits", "--group", "--abits", "--json"}) {
            assertTrue(r.out().contains(flag), "help lacks " + flag + ":\n" + r.out());
        }
        assertTrue(r.out().contains("default: 512"), r.out());
    }

    @Test
    void jsonIsTheLastLine() throws Exception {
        Run r = run("eval", "--model", Fixtures.model("tiny-opt").toString(), "--text",
                Fixtures.corpus("kjv.test.txt").toString(), "--max-windows", "4", "--master", "local[2]", "--json");
        assertEquals(0, r.code(), r.err());
        String[] lines = r.out().trim().split("\n");
        JsonNode json = new ObjectMapper().readTree(lines[lines.length - 1]);
        assertEquals(4, json.get("windows").asInt());
        assertEquals(57685, json.get("tokens").asInt());
        assertEquals(4 * 511, json.get("scored_tokens").asInt());
        double ppl = json.get("ppl").asDouble();
        assertTrue(ppl > 5 && ppl < 60, "a trained model's perplexity on 4 kjv windows, got " + ppl);
        assertTrue(r.err().contains("4/4"), "progress line expected on stderr:\n" + r.err());
    }

    @Test
    void unknownMethodIsOneClearError() {
        Run r = run("eval", "--method", "awq");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--method 'awq' is not known to eval (expected fp or rtn)"), r.err());
        assertEquals(1, r.err().trim().split("\n").length, "one line, no stack trace:\n" + r.err());
    }

    @Test
    void missingModelFolderIsNamed(@TempDir Path tmp) {
        Run r = run("eval", "--model", tmp.resolve("nope").toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("nope/config.json: not found"), r.err());
    }

    @Test
    void truncatedShardIsNamed(@TempDir Path tmp) throws Exception {
        Path model = tmp.resolve("broken");
        Files.createDirectories(model);
        try (Stream<Path> files = Files.list(Fixtures.model("tiny-llama"))) {
            for (Path f : (Iterable<Path>) files::iterator) Files.copy(f, model.resolve(f.getFileName()));
        }
        Path shard = model.resolve("model-00002-of-00003.safetensors");
        byte[] bytes = Files.readAllBytes(shard);
        Files.write(shard, java.util.Arrays.copyOf(bytes, bytes.length / 2));
        Run r = run("eval", "--model", model.toString(), "--max-windows", "2", "--master", "local[1]");
        assertEquals(2, r.code(), r.out());
        assertTrue(r.err().contains("model-00002-of-00003.safetensors"), r.err());
        assertTrue(r.err().contains("truncated"), r.err());
    }

    @Test
    void tooShortTextIsNamed(@TempDir Path tmp) throws Exception {
        Path text = tmp.resolve("short.txt");
        Files.writeString(text, "In the beginning.");
        Run r = run("eval", "--text", text.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("short.txt") && r.err().contains("fewer than one window of 512"), r.err());
    }
}
