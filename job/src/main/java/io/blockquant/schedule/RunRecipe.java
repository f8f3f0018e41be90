package io.blockquant.schedule;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.model.ModelFormatException;
import io.blockquant.store.FileReplace;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The store's {@code recipe.json}: the settings ({@link QuantizeSettings#toJson}) plus everything else that
 * changes the stored model: {@code windows_per_task} (which windows one task's partial sums and activation file
 * hold), {@code calibration_files} (each file's name, bytes and SHA-256; the seed is a setting already) and
 * {@code code_version} (a SHA-256 over the job's compiled classes). {@code --resume} requires an exact match of
 * every key and names each difference.
 */
public final class RunRecipe {

    public static final String FILE = "recipe.json";
    public static final String K_WINDOWS_PER_TASK = "windows_per_task";
    public static final String K_CALIBRATION_FILES = "calibration_files";
    public static final String K_CODE_VERSION = "code_version";

    private static final ObjectMapper JSON = new ObjectMapper();
    private static volatile String codeVersion;

    private RunRecipe() {}

    /** recipe.json's text for {@code req}: the settings' keys, then the run's. */
    public static String json(QuantizeJob.Request req, Configuration hadoop) {
        return json(req.settings(), req.calibrationFiles() == null ? List.of() : req.calibrationFiles(), hadoop);
    }

    static String json(QuantizeSettings settings, List<String> calibrationFiles, Configuration hadoop) {
        Map<String, Object> r = parse(settings.toJson(), "the recipe");
        r.put(K_WINDOWS_PER_TASK, settings.windowsPerTask());
        r.put(K_CALIBRATION_FILES, calibrationFiles(calibrationFiles, hadoop));
        r.put(K_CODE_VERSION, codeVersion());
        try {
            return JSON.writeValueAsString(r);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Each calibration file's name, length and SHA-256, in the order given. */
    static List<Map<String, Object>> calibrationFiles(List<String> files, Configuration hadoop) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (String f : files) {
            Path p = new Path(f);
            Map<String, Object> one = new LinkedHashMap<>();
            try {
                FileSystem fs = p.getFileSystem(hadoop);
                MessageDigest sha = sha256();
                long bytes = 0;
                byte[] buf = new byte[1 << 16];
                try (InputStream in = fs.open(p)) {
                    for (int n; (n = in.read(buf)) > 0; bytes += n) sha.update(buf, 0, n);
                }
                one.put("file", p.getName());
                one.put("bytes", bytes);
                one.put("sha256", HexFormat.of().formatHex(sha.digest()));
            } catch (IOException e) {
                throw new UncheckedIOException(p + ": cannot read the calibration file to record it (" + e.getMessage() + ")", e);
            }
            out.add(one);
        }
        return out;
    }

    /**
     * {@code classes-sha256:<16 hex>} over the names and bytes of the job's class files (from target/classes or
     * the job's jar, entries sorted, timestamps left out): two builds of the same source give the same value.
     */
    public static String codeVersion() {
        String v = codeVersion;
        if (v != null) return v;
        MessageDigest sha = sha256();
        try {
            java.nio.file.Path where = java.nio.file.Path.of(RunRecipe.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            if (Files.isDirectory(where)) {
                try (Stream<java.nio.file.Path> files = Files.walk(where)) {
                    for (java.nio.file.Path f : files.filter(x -> x.toString().endsWith(".class")).sorted().toList()) {
                        sha.update(where.relativize(f).toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
                        sha.update(Files.readAllBytes(f));
                    }
                }
            } else {
                try (JarFile jar = new JarFile(where.toFile())) {
                    List<JarEntry> entries = jar.stream().filter(e -> e.getName().endsWith(".class"))
                            .sorted(java.util.Comparator.comparing(JarEntry::getName)).toList();
                    for (JarEntry e : entries) {
                        sha.update(e.getName().getBytes(java.nio.charset.StandardCharsets.UTF_8));
                        try (InputStream in = jar.getInputStream(e)) {
                            sha.update(in.readAllBytes());
                        }
                    }
                }
            }
        } catch (IOException | java.net.URISyntaxException | RuntimeException e) {
            throw new IllegalStateException("cannot read the job's own classes to record its code version (" + e.getMessage() + ")", e);
        }
        v = "classes-sha256:" + HexFormat.of().formatHex(sha.digest()).substring(0, 16);
        codeVersion = v;
        return v;
    }

    /**
     * {@code --resume}: throws one line naming every key whose value differs between the store's recipe.json and
     * {@code ours} (a key on one side only included), or when the store has none.
     */
    public static void requireSame(Path root, Configuration hadoop, String ours) {
        Path file = new Path(root, FILE);
        Map<String, Object> theirs;
        try {
            FileSystem fs = file.getFileSystem(hadoop);
            Path readable = FileReplace.readable(fs, file);
            if (readable == null) {
                // a new store (the Airflow DAG always passes --resume) or one that died before its first block: nothing to keep
                Path committed = new Path(root, io.blockquant.store.StoreLayout.COMMITTED);
                if (!fs.exists(committed) || fs.listStatus(committed).length == 0) return;
                throw new ModelFormatException(file + ": missing, so --resume cannot check that this run's recipe is the one the "
                        + "committed blocks were quantized with; delete the store and start again");
            }
            try (InputStream in = fs.open(readable)) {
                theirs = parse(new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8), file.toString());
            }
        } catch (IOException e) {
            throw new UncheckedIOException(file + ": cannot read the store's recipe (" + e.getMessage() + ")", e);
        }
        List<String> differences = differences(theirs, parse(ours, "this run's recipe"));
        if (!differences.isEmpty()) {
            throw new IllegalArgumentException(file + ": --resume continues a store with the recipe it was started with; this run "
                    + "differs in " + String.join("; ", differences) + ". Resume with the store's settings and files, or write "
                    + "another --out");
        }
    }

    /** Each differing key as {@code key (store X, this run Y)}, in the store's key order then this run's. */
    static List<String> differences(Map<String, Object> theirs, Map<String, Object> ours) {
        Set<String> keys = new LinkedHashSet<>(theirs.keySet());
        keys.addAll(ours.keySet());
        List<String> out = new ArrayList<>();
        for (String k : keys) {
            Object a = theirs.containsKey(k) ? theirs.get(k) : "absent", b = ours.containsKey(k) ? ours.get(k) : "absent";
            if (!Objects.equals(a, b)) out.add(k + " (store " + a + ", this run " + b + ")");
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> parse(String json, String what) {
        try {
            Object v = JSON.readValue(json, LinkedHashMap.class);
            if (!(v instanceof Map)) throw new ModelFormatException(what + ": expected a JSON object");
            return (Map<String, Object>) v;
        } catch (JsonProcessingException e) {
            throw new ModelFormatException(what + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        }
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
