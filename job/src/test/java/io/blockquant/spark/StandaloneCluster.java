package io.blockquant.spark;

import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * A Spark standalone cluster on 127.0.0.1 for tests: a master and {@code workers} workers, each its own JVM
 * started with {@code java -cp SPARK_HOME/jars/*} from the SPARK_HOME the build assembles
 * ({@code job/target/spark-home/jars}: the job's resolved runtime jars, Spark's own among them). Worker
 * {@code i} offers one GPU through {@code cluster/gpu/discover-gpus.sh} with the fake address {@code "i"}.
 * Executors are JVMs the workers spawn from the same SPARK_HOME; the job's classes reach them as a jar
 * shipped with {@code spark.jars}.
 *
 * <p>A JUnit extension ({@code @RegisterExtension static}): starts before the class's tests and kills every
 * JVM it started, the executors included, after them (and from a shutdown hook if the test JVM exits
 * first), whether the tests passed, failed or the start itself failed.
 */
public final class StandaloneCluster implements BeforeAllCallback, AfterAllCallback {

    private static final int WORKER_MEMORY_MB = 1536;
    private static final long START_TIMEOUT_S = 120;

    private final int workers;
    private final List<Process> daemons = Collections.synchronizedList(new ArrayList<>());
    private final Path repository;
    private Path dir;
    private Path jobJar, coreJar;
    private String masterUrl;
    private Thread shutdownHook;
    private CompletableFuture<Void> starting;

    public StandaloneCluster(int workers, Path repository) {
        this.workers = workers;
        this.repository = repository;
    }

    /** Starts the cluster in the background: the class's own set-up (a local reference run) overlaps with it. */
    @Override
    public void beforeAll(ExtensionContext context) {
        startInBackground();
    }

    @Override
    public void afterAll(ExtensionContext context) {
        stop();
    }

    public synchronized void startInBackground() {
        if (starting == null) {
            starting = CompletableFuture.runAsync(() -> {
                try {
                    start();
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(e);
                }
            });
        }
    }

    /** Waits until the master runs and every worker has registered with it. */
    public void awaitReady() {
        startInBackground();
        try {
            starting.join();
        } catch (CompletionException e) {
            throw e.getCause() instanceof RuntimeException r ? r : new IllegalStateException(e.getCause());
        }
    }

    public String masterUrl() {
        awaitReady();
        return masterUrl;
    }

    public int workers() {
        return workers;
    }

    /**
     * Spark settings for a driver in this JVM that runs on the cluster: one executor of one core and one GPU
     * per worker, all registered before the first job, the job's jar shipped, Kryo with every class
     * registered (an unregistered class fails the job).
     */
    public Map<String, String> driverConf() {
        awaitReady();
        Map<String, String> c = new LinkedHashMap<>();
        c.put("spark.jars", jobJar.toUri() + "," + coreJar.toUri());
        c.put("spark.driver.host", "127.0.0.1");
        c.put("spark.driver.bindAddress", "127.0.0.1");
        c.put("spark.ui.enabled", "false");
        c.put("spark.executor.cores", "1");
        c.put("spark.cores.max", Integer.toString(workers));
        c.put("spark.executor.memory", "1g");
        c.put("spark.executor.resource.gpu.amount", "1");
        // the workers' GPUs are fake addresses: auto would (rightly) stop the job when CUDA cannot load on them
        c.put("spark.blockquant.backend", "cpu");
        c.put("spark.executorEnv.OMP_NUM_THREADS", "1");
        c.put("spark.scheduler.minRegisteredResourcesRatio", "1.0");
        c.put("spark.scheduler.maxRegisteredResourcesWaitingTime", "120s");
        c.put("spark.task.maxFailures", "4");
        c.put("spark.serializer", "org.apache.spark.serializer.KryoSerializer");
        c.put("spark.kryo.registrator", KryoClasses.class.getName());
        c.put("spark.kryo.registrationRequired", "true");
        return c;
    }

    private void start() throws IOException, InterruptedException {
        Path classes = classesDir();
        Path sparkHome = classes.getParent().resolve("spark-home");
        Path jars = sparkHome.resolve("jars");
        try (Stream<Path> s = Files.isDirectory(jars) ? Files.list(jars) : Stream.empty()) {
            if (s.noneMatch(p -> p.getFileName().toString().startsWith("spark-core_"))) {
                throw new IllegalStateException(jars + " holds no Spark jars: it is assembled by the build "
                        + "(mvn test, phase process-test-classes: dependency:copy-dependencies)");
            }
        }
        dir = Files.createTempDirectory("blockquant-cluster-");
        shutdownHook = new Thread(this::stop, "stop standalone cluster");
        Runtime.getRuntime().addShutdownHook(shutdownHook);
        try {
            Path conf = Files.createDirectories(dir.resolve("conf"));
            // master and workers log at INFO (registration lines); executors as the job does
            Files.writeString(conf.resolve("log4j2.properties"), String.join("\n",
                    "rootLogger.level = warn", "rootLogger.appenderRef.stderr.ref = console",
                    "appender.console.type = Console", "appender.console.name = console",
                    "appender.console.target = SYSTEM_ERR", "appender.console.layout.type = PatternLayout",
                    "appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n",
                    "logger.deploy.name = org.apache.spark.deploy", "logger.deploy.level = info",
                    "logger.blockquant.name = io.blockquant", "logger.blockquant.level = info", ""));
            jobJar = jar(classes, dir.resolve("blockquant-job.jar"));
            // the engine (module core): a classes folder in a reactor build, its jar once packaged
            Path core = coreClasses();
            coreJar = Files.isDirectory(core) ? jar(core, dir.resolve("blockquant-core.jar")) : core;

            int port = freePort();
            masterUrl = "spark://127.0.0.1:" + port;
            Process master = launch("master", sparkHome, Map.of(), List.of(),
                    "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", Integer.toString(port),
                    "--webui-port", "0");
            waitForPort(master, port);
            List<Process> started = new ArrayList<>();
            for (int i = 0; i < workers; i++) {
                Path work = Files.createDirectories(dir.resolve("work-" + i));
                started.add(launch("worker-" + i, sparkHome,
                        Map.of("BLOCKQUANT_FAKE_GPUS", "1", "BLOCKQUANT_FAKE_GPU_FIRST", Integer.toString(i)),
                        List.of("-Dspark.worker.resource.gpu.amount=1",
                                "-Dspark.worker.resource.gpu.discoveryScript=" + repository.resolve("cluster/gpu/discover-gpus.sh")),
                        "org.apache.spark.deploy.worker.Worker", masterUrl, "--host", "127.0.0.1", "--port", "0",
                        "--webui-port", "0", "--cores", "1", "--memory", WORKER_MEMORY_MB + "m", "--work-dir", work.toString()));
            }
            for (int i = 0; i < workers; i++) waitForLog(started.get(i), "worker-" + i, "Successfully registered with master");
        } catch (IOException | InterruptedException | RuntimeException e) {
            kill();
            throw e;
        }
    }

    /** The last lines of every log of the cluster (daemons and executors), for assertion messages. */
    public String logTail(int lines) {
        StringBuilder out = new StringBuilder();
        if (dir == null) return "(the cluster is not running)";
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".log") || p.getFileName().toString().equals("stderr")).sorted().toList()) {
                List<String> all = Files.readAllLines(f, StandardCharsets.UTF_8);
                out.append("==> ").append(dir.relativize(f)).append('\n');
                all.subList(Math.max(0, all.size() - lines), all.size()).forEach(l -> out.append(l).append('\n'));
            }
        } catch (IOException | UncheckedIOException e) {
            out.append("(cannot read the logs: ").append(e.getMessage()).append(")\n");
        }
        return out.toString();
    }

    /**
     * Kills the executors, the workers and the master (forcibly: nothing of theirs is worth keeping), waits
     * until each has exited and removes the cluster's folder.
     */
    public void stop() {
        CompletableFuture<Void> s;
        synchronized (this) {
            s = starting;
            starting = null;
        }
        if (s != null) {
            try {
                s.join(); // a start under way ends (or fails) first: it may still launch daemons
            } catch (CompletionException failed) {
                // what it started is killed below all the same
            }
        }
        kill();
    }

    private synchronized void kill() {
        List<ProcessHandle> victims = new ArrayList<>();
        for (int i = daemons.size() - 1; i >= 0; i--) { // workers before the master, children before parents
            ProcessHandle h = daemons.get(i).toHandle();
            h.descendants().forEach(victims::add);
            victims.add(h);
        }
        if (dir != null) {
            // an executor whose worker died first is no longer its descendant: its class path names our conf dir
            String mark = dir.resolve("conf").toString();
            ProcessHandle.allProcesses()
                    .filter(p -> p.pid() != ProcessHandle.current().pid())
                    .filter(p -> p.info().commandLine().map(c -> c.contains(mark)).orElse(false))
                    .forEach(victims::add);
        }
        for (ProcessHandle h : victims) h.destroyForcibly();
        List<String> alive = new ArrayList<>();
        for (ProcessHandle h : victims) {
            try {
                h.onExit().get(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                if (h.isAlive()) alive.add(h.pid() + " " + h.info().commandLine().orElse("?"));
            }
        }
        daemons.clear();
        masterUrl = null;
        if (shutdownHook != null && Thread.currentThread() != shutdownHook) {
            try {
                Runtime.getRuntime().removeShutdownHook(shutdownHook);
            } catch (IllegalStateException shuttingDown) {
                // the hook is running or about to
            }
            shutdownHook = null;
        }
        if (dir != null) {
            try (Stream<Path> files = Files.walk(dir)) {
                files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            } catch (IOException | UncheckedIOException e) {
                // a temp folder left behind is no reason to fail the tests
            }
            dir = null;
        }
        if (!alive.isEmpty()) throw new IllegalStateException("cluster processes still alive after kill: " + alive);
    }

    private Process launch(String name, Path sparkHome, Map<String, String> env, List<String> props, String mainClass,
                           String... args) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Paths.get(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xmx256m");
        cmd.addAll(jvmOptions());
        cmd.add("-Dspark.master.rest.enabled=false");
        cmd.addAll(props);
        cmd.add("-cp");
        cmd.add(dir.resolve("conf") + "/:" + sparkHome.resolve("jars") + "/*");
        cmd.add(mainClass);
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile())
                .redirectErrorStream(true).redirectOutput(dir.resolve(name + ".log").toFile());
        Map<String, String> e = pb.environment();
        e.put("SPARK_HOME", sparkHome.toString());
        e.put("SPARK_CONF_DIR", dir.resolve("conf").toString()); // executors' class path gets it
        e.put("SPARK_SCALA_VERSION", "2.13"); // no Spark build tree in this SPARK_HOME to tell it
        e.put("SPARK_LOCAL_IP", "127.0.0.1");
        e.put("OMP_NUM_THREADS", "1");
        e.putAll(env);
        Process p = pb.start();
        daemons.add(p);
        return p;
    }

    /** The options every JVM of ours runs with: this test JVM's module openings (from the build's argLine). */
    public static List<String> jvmOptions() {
        List<String> out = new ArrayList<>();
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (a.startsWith("--add-opens") || a.equals("-Djdk.reflect.useDirectMethodHandle=false")
                    || a.equals("-Dio.netty.tryReflectionSetAccessible=true")) {
                out.add(a);
            }
        }
        return out;
    }

    private void waitForPort(Process p, int port) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(START_TIMEOUT_S);
        while (System.nanoTime() < deadline) {
            if (!p.isAlive()) throw new IllegalStateException("the Spark master exited:\n" + logTail(40));
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 500);
                return;
            } catch (IOException notYet) {
                Thread.sleep(200);
            }
        }
        throw new IllegalStateException("the Spark master did not listen on port " + port + " within " + START_TIMEOUT_S + " s:\n" + logTail(40));
    }

    private void waitForLog(Process p, String name, String line) throws InterruptedException, IOException {
        Path log = dir.resolve(name + ".log");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(START_TIMEOUT_S);
        while (System.nanoTime() < deadline) {
            if (Files.exists(log) && Files.readString(log, StandardCharsets.UTF_8).contains(line)) return;
            if (!p.isAlive()) throw new IllegalStateException("Spark " + name + " exited:\n" + logTail(40));
            Thread.sleep(200);
        }
        throw new IllegalStateException("Spark " + name + " did not log '" + line + "' within " + START_TIMEOUT_S + " s:\n" + logTail(40));
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            return s.getLocalPort();
        }
    }

    /** job/target/classes: where this JVM loads the job from. */
    private static Path classesDir() {
        return codeSource(KryoClasses.class);
    }

    /** core/target/classes (or core's jar): where this JVM loads the engine from. */
    public static Path coreClasses() {
        return codeSource(io.blockquant.tensor.Tensor.class);
    }

    private static Path codeSource(Class<?> c) {
        try {
            return Paths.get(c.getProtectionDomain().getCodeSource().getLocation().toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** A jar of {@code classes} (the executors' copy of the job). */
    private static Path jar(Path classes, Path target) throws IOException {
        try (OutputStream os = Files.newOutputStream(target); JarOutputStream jar = new JarOutputStream(os);
             Stream<Path> files = Files.walk(classes)) {
            for (Path f : files.filter(Files::isRegularFile).sorted().toList()) {
                jar.putNextEntry(new JarEntry(classes.relativize(f).toString().replace('\\', '/')));
                Files.copy(f, jar);
                jar.closeEntry();
            }
        }
        return target;
    }
}
