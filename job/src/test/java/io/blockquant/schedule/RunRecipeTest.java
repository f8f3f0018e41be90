package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.model.Family;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** recipe.json records what changes the stored model, and --resume refuses each difference by name. */
class RunRecipeTest {

    static final ObjectMapper JSON = new ObjectMapper();
    final Configuration conf = new Configuration();

    @TempDir
    Path tmp;
    Path calibA, calibB, store;

    @BeforeEach
    void files() throws Exception {
        calibA = Files.writeString(tmp.resolve("a.txt"), "In the beginning God created the heaven and the earth.");
        calibB = Files.writeString(tmp.resolve("b.txt"), "And the earth was without form, and void.");
        store = Files.createDirectories(tmp.resolve("store"));
    }

    static QuantizeSettings settings(String... kv) {
        Map<String, String> m = new HashMap<>(Map.of("method", "rtn", "wbits", "4", "group", "64", "nsamples", "8",
                "seqlen", "64", "windows-per-task", "2"));
        for (int i = 0; i < kv.length; i += 2) m.put(kv[i], kv[i + 1]);
        return QuantizeSettings.parse(m, Family.LLAMA);
    }

    String recipe(QuantizeSettings s, Path... calib) {
        return RunRecipe.json(s, java.util.Arrays.stream(calib).map(Path::toString).toList(), conf);
    }

    /** The store started with {@code theirs}; this run has {@code ours}: the refusal's text (null: accepted). */
    String resume(String theirs, String ours) throws Exception {
        Files.writeString(store.resolve("recipe.json"), theirs);
        try {
            RunRecipe.requireSame(new org.apache.hadoop.fs.Path(store.toUri()), conf, ours);
            return null;
        } catch (IllegalArgumentException e) {
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
            return e.getMessage();
        }
    }

    @Test
    void theRecipeRecordsWindowsPerTaskTheCalibrationFilesAndTheCodeVersion() throws Exception {
        Map<?, ?> r = JSON.readValue(recipe(settings(), calibA, calibB), Map.class);
        assertEquals(2, r.get("windows_per_task"));
        assertEquals(0, r.get("seed"));
        List<?> files = (List<?>) r.get("calibration_files");
        assertEquals(Map.of("file", "a.txt", "bytes", 54, "sha256", sha256(calibA)), files.get(0));
        assertEquals("b.txt", ((Map<?, ?>) files.get(1)).get("file"));
        assertTrue(((String) r.get("code_version")).matches("classes-sha256:[0-9a-f]{16}"), r.get("code_version").toString());
        assertEquals(RunRecipe.codeVersion(), r.get("code_version"));
    }

    static String sha256(Path f) throws Exception {
        return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f)));
    }

    @Test
    void theSameRecipeResumes() throws Exception {
        assertNull(resume(recipe(settings(), calibA), recipe(settings(), calibA)));
    }

    @Test
    void eachSettingThatDiffersIsRefusedByName() throws Exception {
        String theirs = recipe(settings(), calibA);
        for (String[] change : new String[][] {{"windows-per-task", "4", "windows_per_task (store 2, this run 4)"},
                {"seed", "7", "seed (store 0, this run 7)"}, {"wbits", "3", "wbits (store 4, this run 3)"},
                {"nsamples", "16", "nsamples (store 8, this run 16)"}, {"mode", "parallel", "mode (store sequential, this run parallel)"},
                {"method", "gptq", "method (store rtn, this run gptq)"}, {"kv-bits", "8", "kv_bits (store 0, this run 8)"},
                {"abits", "4", "asym_acts (store false, this run true)"}}) {
            String msg = resume(theirs, recipe(settings(change[0], change[1]), calibA));
            assertNotNull(msg, change[0] + " accepted");
            assertTrue(msg.contains(change[2]), msg);
        }
    }

    @Test
    void calibrationFilesThatDifferAreRefusedByName() throws Exception {
        String theirs = recipe(settings(), calibA);
        // the same name and size, other bytes
        Path same = Files.createDirectories(tmp.resolve("other")).resolve("a.txt");
        Files.writeString(same, Files.readString(calibA).replace('G', 'g'));
        String msg = resume(theirs, recipe(settings(), same));
        assertTrue(msg.contains("calibration_files (store [{file=a.txt, bytes=54, sha256=" + sha256(calibA)), msg);
        assertTrue(msg.contains("sha256=" + sha256(same)), msg);
        assertNotNull(resume(theirs, recipe(settings(), calibA, calibB)), "an added file");
        assertNotNull(resume(theirs, recipe(settings(), calibB)), "another file");
        // the same file by another path is the same calibration
        Path copy = Files.copy(calibA, Files.createDirectories(tmp.resolve("copy")).resolve("a.txt"));
        assertNull(resume(theirs, recipe(settings(), copy)));
    }

    @Test
    void anotherCodeVersionAndAKeyOnOneSideOnlyAreRefusedByName() throws Exception {
        String ours = recipe(settings(), calibA);
        @SuppressWarnings("unchecked")
        Map<String, Object> theirs = new LinkedHashMap<>(JSON.readValue(ours, Map.class));
        theirs.put("code_version", "classes-sha256:0000000000000000");
        theirs.remove("windows_per_task"); // a store started before the key was recorded
        theirs.put("old_key", 1);
        String msg = resume(JSON.writeValueAsString(theirs), ours);
        assertTrue(msg.contains("code_version (store classes-sha256:0000000000000000, this run " + RunRecipe.codeVersion() + ")"), msg);
        assertTrue(msg.contains("windows_per_task (store absent, this run 2)"), msg);
        assertTrue(msg.contains("old_key (store 1, this run absent)"), msg);
        assertFalse(msg.contains("seed"), "only the differences: " + msg);
    }

    @Test
    void aStoreWithoutARecipeIsNotResumedBlindly() throws Exception {
        // nothing committed yet (a first try that passes --resume, as the Airflow DAG does): nothing to protect
        RunRecipe.requireSame(new org.apache.hadoop.fs.Path(store.toUri()), conf, recipe(settings(), calibA));
        Files.createFile(Files.createDirectories(store.resolve("_committed")).resolve("block=0"));
        var e = assertThrows(io.blockquant.model.ModelFormatException.class,
                () -> RunRecipe.requireSame(new org.apache.hadoop.fs.Path(store.toUri()), conf, recipe(settings(), calibA)));
        assertTrue(e.getMessage().contains("recipe.json: missing"), e.getMessage());
    }
}
