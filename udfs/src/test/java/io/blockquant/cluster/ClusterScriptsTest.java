package io.blockquant.cluster;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The cluster/ scripts, run as a cluster runs them: the GPU discovery script (through its fake-GPU variable and
 * through a fake nvidia-smi), the spark-submit launchers in dry-run mode, conf/spark-defaults.conf, and the
 * Airflow DAG's own Python test (cluster/airflow/test_dag.py, which needs no Airflow).
 */
class ClusterScriptsTest {

    static final Path ROOT = repositoryRoot();
    static final Path DISCOVER = ROOT.resolve("cluster/gpu/discover-gpus.sh");
    static final ObjectMapper JSON = new ObjectMapper();

    @TempDir Path tmp;

    record Result(int exit, String out, String err) {}

    static Path repositoryRoot() {
        for (Path p = Paths.get("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isRegularFile(p.resolve("cluster/gpu/discover-gpus.sh"))) return p;
        }
        throw new IllegalStateException("no cluster/gpu/discover-gpus.sh above " + Paths.get("").toAbsolutePath());
    }

    static Result run(Map<String, String> env, String... command) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(command).directory(ROOT.toFile());
        pb.environment().putAll(env);
        Path out = Files.createTempFile("bq-out", ".txt"), err = Files.createTempFile("bq-err", ".txt");
        try {
            Process p = pb.redirectOutput(out.toFile()).redirectError(err.toFile()).start();
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "timed out: " + String.join(" ", command));
            return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
        } finally {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }

    static String bash() {
        for (String b : new String[] {"/bin/bash", "/usr/bin/bash"}) if (Files.isExecutable(Paths.get(b))) return b;
        throw new IllegalStateException("no bash in /bin or /usr/bin");
    }

    static List<String> addresses(String json) throws IOException {
        JsonNode node = JSON.readTree(json);
        assertEquals("gpu", node.get("name").asText(), json);
        assertEquals(2, node.size(), "only name and addresses: " + json);
        List<String> out = new ArrayList<>();
        for (JsonNode a : node.get("addresses")) {
            assertTrue(a.isTextual(), "addresses are strings for Spark: " + json);
            out.add(a.asText());
        }
        return out;
    }

    @Test
    void discoveryReportsFakeGpus() throws Exception {
        Result r = run(Map.of("BLOCKQUANT_FAKE_GPUS", "3"), bash(), DISCOVER.toString());
        assertEquals(0, r.exit(), r.err());
        assertEquals(List.of("0", "1", "2"), addresses(r.out()));
        r = run(Map.of("BLOCKQUANT_FAKE_GPUS", "0"), bash(), DISCOVER.toString());
        assertEquals(0, r.exit(), r.err());
        assertEquals(List.of(), addresses(r.out()));
        r = run(Map.of("BLOCKQUANT_FAKE_GPUS", "two"), bash(), DISCOVER.toString());
        assertEquals(1, r.exit());
        assertTrue(r.err().contains("BLOCKQUANT_FAKE_GPUS='two' is not a count"), r.err());
        // a second worker on the same host offers other addresses
        r = run(Map.of("BLOCKQUANT_FAKE_GPUS", "2", "BLOCKQUANT_FAKE_GPU_FIRST", "2"), bash(), DISCOVER.toString());
        assertEquals(0, r.exit(), r.err());
        assertEquals(List.of("2", "3"), addresses(r.out()));
        r = run(Map.of("BLOCKQUANT_FAKE_GPUS", "2", "BLOCKQUANT_FAKE_GPU_FIRST", "-1"), bash(), DISCOVER.toString());
        assertEquals(1, r.exit());
        assertTrue(r.err().contains("BLOCKQUANT_FAKE_GPU_FIRST='-1' is not an index"), r.err());
    }

    @Test
    void discoveryReadsNvidiaSmi() throws Exception {
        // a fake nvidia-smi that answers the query the script makes, as the driver prints it (CRLF included)
        Path bin = Files.createDirectory(tmp.resolve("bin"));
        Path smi = bin.resolve("nvidia-smi");
        Files.writeString(smi, """
                #!/bin/sh
                [ "$*" = "--query-gpu=index --format=csv,noheader" ] || { echo "unexpected: $*" >&2; exit 9; }
                printf '0\\r\\n2\\n5\\n'
                """, StandardCharsets.UTF_8);
        Files.setPosixFilePermissions(smi, PosixFilePermissions.fromString("rwxr-xr-x"));
        Map<String, String> env = new HashMap<>();
        env.put("PATH", bin + ":" + System.getenv("PATH"));
        Result r = run(env, bash(), DISCOVER.toString());
        assertEquals(0, r.exit(), r.err());
        assertEquals(List.of("0", "2", "5"), addresses(r.out()));

        // without nvidia-smi an executor that asked for a GPU must fail, saying why
        r = run(Map.of("PATH", Files.createDirectory(tmp.resolve("empty")).toString()), bash(), DISCOVER.toString());
        assertEquals(1, r.exit(), r.out());
        assertTrue(r.err().contains("nvidia-smi not found"), r.err());
        assertEquals("", r.out());
    }

    @Test
    void launchersPassGpuKryoAndTheSubcommand() throws Exception {
        Map<String, String> env = new HashMap<>(Map.of("BQ_DRY_RUN", "1", "BQ_EXECUTORS", "4",
                "BQ_K8S_API", "https://k8s.example:6443", "BQ_IMAGE", "registry.example/blockquant:1"));
        for (String launcher : new String[] {"standalone.sh", "yarn.sh", "k8s.sh"}) {
            Result r = run(env, bash(), ROOT.resolve("cluster/submit/" + launcher).toString(),
                    "quantize", "--out", "hdfs:///stores/x");
            assertEquals(0, r.exit(), launcher + ": " + r.err());
            List<String> args = List.of(r.out().split("\n"));
            assertTrue(args.get(0).endsWith("spark-submit"), launcher + ": " + args);
            assertEquals(ROOT.resolve("conf/spark-defaults.conf").toString(), after(args, "--properties-file"));
            assertEquals("io.blockquant.cli.Main", after(args, "--class"));
            List<String> confs = confs(args);
            for (String c : new String[] {"spark.executor.resource.gpu.amount=1", "spark.task.resource.gpu.amount=1",
                    "spark.serializer=org.apache.spark.serializer.KryoSerializer",
                    "spark.kryo.registrator=io.blockquant.spark.KryoClasses", "spark.executor.instances=4"}) {
                assertTrue(confs.contains(c), launcher + " lacks --conf " + c + ": " + confs);
            }
            assertEquals(List.of("quantize", "--out", "hdfs:///stores/x"), args.subList(args.size() - 3, args.size()),
                    launcher + ": the application arguments come last, after the jar");
            assertTrue(args.get(args.size() - 4).endsWith(".jar"), launcher + ": " + args);
        }
        Result r = run(Map.of("BQ_DRY_RUN", "1"), bash(), ROOT.resolve("cluster/submit/k8s.sh").toString(), "eval");
        assertNotEquals(0, r.exit());
        assertTrue(r.err().contains("set BQ_K8S_API"), r.err());
    }

    @Test
    void sparkDefaultsAskForOneGpuPerExecutorAndTask() throws Exception {
        Map<String, String> props = new LinkedHashMap<>();
        List<String> lines = Files.readAllLines(ROOT.resolve("conf/spark-defaults.conf"));
        for (String line : lines) {
            String l = line.strip();
            if (l.isEmpty() || l.startsWith("#")) continue;
            String[] kv = l.split("\\s+", 2);
            assertEquals(2, kv.length, "no value: " + line);
            assertTrue(kv[0].startsWith("spark."), "not a Spark property: " + line);
            assertNull(props.put(kv[0], kv[1]), "set twice: " + kv[0]);
        }
        assertEquals("1", props.get("spark.executor.resource.gpu.amount"));
        assertEquals("1", props.get("spark.task.resource.gpu.amount"));
        assertEquals("org.apache.spark.serializer.KryoSerializer", props.get("spark.serializer"));
        assertEquals("io.blockquant.spark.KryoClasses", props.get("spark.kryo.registrator"));
        assertTrue(props.get("spark.executor.resource.gpu.discoveryScript").endsWith("/cluster/gpu/discover-gpus.sh"));
        // a task takes the whole executor: cores per task equal cores per executor
        assertEquals(props.get("spark.executor.cores"), props.get("spark.task.cpus"));
    }

    @Test
    void airflowDagTestPasses() throws Exception {
        try {
            run(Map.of(), "python3", "--version");
        } catch (IOException e) {
            Assumptions.abort("python3 is not installed: cluster/airflow/test_dag.py was not run (" + e.getMessage() + ")");
        }
        Result r = run(Map.of("PYTHONDONTWRITEBYTECODE", "1"), "python3", "cluster/airflow/test_dag.py");
        assertEquals(0, r.exit(), "cluster/airflow/test_dag.py failed:\n" + r.out() + r.err());
        // unittest reports on stderr; a file that found no tests would also exit 0
        assertTrue(r.err().matches("(?s).*Ran [1-9]\\d* tests?.*\\bOK\\b.*"), r.err());
    }

    static String after(List<String> args, String flag) {
        int i = args.indexOf(flag);
        assertTrue(i >= 0 && i + 1 < args.size(), flag + " missing: " + args);
        return args.get(i + 1);
    }

    static List<String> confs(List<String> args) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i + 1 < args.size(); i++) if (args.get(i).equals("--conf")) out.add(args.get(i + 1));
        return out;
    }
}
