package io.blockquant.store;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.blockquant.model.ModelFormatException;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The one-writer lock of a model store: {@code STORE/_lease.json}, made by an exclusive create
 * ({@code FileSystem.create(path, false)}), holding the owner, host, pid, start, a random token and a
 * heartbeat that a driver thread rewrites every {@link #HEARTBEAT_SECONDS} seconds. A second writer finds the
 * file and is refused in one line naming the owner and host. A lease whose heartbeat is older than
 * {@link #STALE_SECONDS} (default 300 s: ten missed heartbeats) belonged to a job that died; {@code --resume}
 * takes it over by renaming it aside (only one rename of a file succeeds on HDFS and local disks) and creating
 * its own. Released (deleted) when the job ends, in a finally.
 *
 * <p>Staleness compares the heartbeat written by the owner's clock with the reader's clock: the two hosts'
 * clocks must agree to well within the stale interval. On S3A the exclusive create is a check then a PUT,
 * not atomic: two runs started within the same instant could both pass it (docs/store-format.md).
 */
public final class StoreLease implements AutoCloseable {

    public static final String FILE = "_lease.json";
    /** Hadoop configuration keys (set with {@code --conf spark.hadoop.<key>=...} on a cluster). */
    public static final String HEARTBEAT_SECONDS = "blockquant.lease.heartbeat.seconds";
    public static final String STALE_SECONDS = "blockquant.lease.stale.seconds";
    static final long DEFAULT_HEARTBEAT_SECONDS = 30;
    static final long DEFAULT_STALE_SECONDS = 300;

    /** Leases this JVM holds, by store root: {@link StoreWriter} checks its store's before every commit. */
    private static final Map<Path, StoreLease> HELD = new ConcurrentHashMap<>();
    private static final ObjectMapper JSON = new ObjectMapper();

    private final FileSystem fs;
    private final Path root;
    private final Path file;
    private final boolean createdRoot;
    private final Map<String, Object> record;
    private final ScheduledExecutorService heartbeat;
    private volatile String lost;

    private StoreLease(FileSystem fs, Path root, boolean createdRoot, Map<String, Object> record, long heartbeatSeconds) {
        this.fs = fs;
        this.root = root;
        this.file = new Path(root, FILE);
        this.createdRoot = createdRoot;
        this.record = record;
        this.heartbeat = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "blockquant-store-lease " + root);
            t.setDaemon(true);
            return t;
        });
        heartbeat.scheduleWithFixedDelay(this::beat, heartbeatSeconds, heartbeatSeconds, TimeUnit.SECONDS);
    }

    /**
     * Takes the lease of the store at {@code storePath} (creating the folder when absent), or throws one line
     * naming who holds it. {@code resume}: a stale lease is taken over.
     */
    public static StoreLease acquire(Configuration conf, String storePath, boolean resume) {
        long heartbeatSeconds = conf.getLong(HEARTBEAT_SECONDS, DEFAULT_HEARTBEAT_SECONDS);
        long staleSeconds = conf.getLong(STALE_SECONDS, DEFAULT_STALE_SECONDS);
        if (heartbeatSeconds < 1 || staleSeconds <= heartbeatSeconds) {
            throw new IllegalArgumentException(HEARTBEAT_SECONDS + " = " + heartbeatSeconds + ", " + STALE_SECONDS + " = "
                    + staleSeconds + ": expected heartbeat >= 1 and stale > heartbeat");
        }
        Path given = new Path(storePath);
        try {
            FileSystem fs = given.getFileSystem(conf);
            Path root = fs.makeQualified(given);
            boolean createdRoot = !fs.exists(root);
            if (!createdRoot && !fs.getFileStatus(root).isDirectory()) {
                throw new ModelFormatException(root + " is a file, not a model store folder; choose another --out");
            }
            fs.mkdirs(root);
            Path file = new Path(root, FILE);
            Map<String, Object> mine = newRecord();
            boolean created;
            try {
                created = tryCreate(fs, file, mine);
            } catch (IOException e) {
                if (createdRoot) fs.delete(root, false); // leave no trace of a run that could not start
                throw e;
            }
            if (!created) {
                Map<String, Object> theirs = read(fs, file);
                long age = theirs == null ? -1 : ageSeconds(theirs);
                boolean stale = theirs != null && age > staleSeconds;
                if (!(resume && stale)) throw refusal(root, theirs, age, staleSeconds, stale);
                // take-over: the rename is the arbiter between two --resume runs racing for one stale lease
                Path aside = new Path(root, FILE + ".stale-" + mine.get("token"));
                if (!fs.rename(file, aside) || !tryCreate(fs, file, mine)) {
                    throw new ModelFormatException(root + ": another run took over the stale lease at the same moment; "
                            + "only one writer may continue the store");
                }
                fs.delete(aside, false);
            }
            StoreLease lease = new StoreLease(fs, root, createdRoot, mine, heartbeatSeconds);
            HELD.put(root, lease);
            return lease;
        } catch (IOException e) {
            throw new UncheckedIOException(storePath + ": cannot take the store's lease " + FILE + " (" + e.getMessage() + ")", e);
        }
    }

    private static Map<String, Object> newRecord() {
        Map<String, Object> r = new LinkedHashMap<>();
        String host;
        try {
            host = InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            host = "unknown-host";
        }
        long now = System.currentTimeMillis();
        r.put("owner", System.getProperty("user.name", "unknown"));
        r.put("host", host);
        r.put("pid", ProcessHandle.current().pid());
        r.put("start", Instant.ofEpochMilli(now).toString());
        r.put("heartbeat", Instant.ofEpochMilli(now).toString());
        r.put("heartbeat_millis", now);
        r.put("token", UUID.randomUUID().toString());
        return r;
    }

    /** The exclusive create: false when the file exists already. */
    private static boolean tryCreate(FileSystem fs, Path file, Map<String, Object> record) throws IOException {
        OutputStream out;
        try {
            out = fs.create(file, false);
        } catch (FileAlreadyExistsException | java.nio.file.FileAlreadyExistsException e) {
            return false;
        }
        try (out) {
            out.write(JSON.writeValueAsBytes(record));
        } catch (IOException e) {
            fs.delete(file, false); // ours, half written (a full disk): no one else's
            throw e;
        }
        return true;
    }

    /** The lease's record, or null when it vanished or cannot be parsed after a few tries (being rewritten). */
    @SuppressWarnings("unchecked")
    static Map<String, Object> read(FileSystem fs, Path file) throws IOException {
        for (int attempt = 0; attempt < 5; attempt++) {
            try (InputStream in = fs.open(file)) {
                byte[] bytes = in.readAllBytes();
                if (bytes.length > 0) return JSON.readValue(bytes, Map.class);
            } catch (FileNotFoundException e) {
                return null;
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                // caught between the truncate and the write of a heartbeat
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        return null;
    }

    private static long ageSeconds(Map<String, Object> record) {
        Object ms = record.get("heartbeat_millis");
        if (!(ms instanceof Number n)) return Long.MAX_VALUE; // no heartbeat at all: not a lease this code wrote
        return (System.currentTimeMillis() - n.longValue()) / 1000;
    }

    private static ModelFormatException refusal(Path root, Map<String, Object> theirs, long age, long staleSeconds, boolean stale) {
        if (theirs == null) {
            return new ModelFormatException(root + " is being written by another quantize run (its " + FILE
                    + " is being created); a second writer is refused: wait for it or choose another --out");
        }
        String who = theirs.get("owner") + "@" + theirs.get("host") + " (pid " + theirs.get("pid") + ", since "
                + theirs.get("start") + ", last heartbeat " + age + " s ago)";
        if (stale) {
            return new ModelFormatException(root + " was being written by " + who + ", whose heartbeat stopped more than "
                    + staleSeconds + " s ago; run with --resume to take the store over");
        }
        return new ModelFormatException(root + " is being written by " + who
                + "; a second writer is refused: wait for it, or if it died run with --resume once its heartbeat is "
                + staleSeconds + " s old (" + STALE_SECONDS + "), or choose another --out");
    }

    /** The heartbeat: rewrites the lease with the time, unless another run took it over (then says so once). */
    private void beat() {
        if (lost != null) return;
        try {
            lost = lostReason(read(fs, file));
            if (lost != null) {
                System.err.println("blockquant: " + lost);
                return;
            }
            long ms = System.currentTimeMillis();
            record.put("heartbeat", Instant.ofEpochMilli(ms).toString());
            record.put("heartbeat_millis", ms);
            // a new file renamed over the lease: a failed write (a full disk) leaves the last heartbeat whole; on an
            // object store the new object replaces the old one whole when the stream closes
            boolean direct = io.blockquant.model.RenameOver.copies(fs);
            Path beat = direct ? file : new Path(root, "." + FILE + "." + record.get("token") + ".beat");
            try (OutputStream out = fs.create(beat, true)) {
                out.write(JSON.writeValueAsBytes(record));
            }
            if (!direct) io.blockquant.model.RenameOver.move(fs, beat, file);
        } catch (IOException | RuntimeException e) {
            // a missed beat; ten in a row make the lease stale, which the next one may fix
            System.err.println("blockquant: " + file + ": cannot renew the lease (" + e.getMessage() + ")");
        }
    }

    /** Why this run no longer holds its lease, given the lease file as it is now ({@code null}: gone); null while held. */
    private String lostReason(Map<String, Object> now) {
        if (now != null && record.get("token").equals(now.get("token"))) return null;
        return root + ": this run lost its lease " + FILE + " (" + (now == null ? "the file is gone"
                : "taken over by " + now.get("owner") + "@" + now.get("host") + " pid " + now.get("pid"))
                + "); it commits nothing more";
    }

    /** Throws one line unless this run still holds its lease (read from the file, not remembered). */
    public void checkHeld() {
        if (lost == null) {
            try {
                lost = lostReason(read(fs, file));
            } catch (IOException e) {
                throw new UncheckedIOException(file + ": cannot check the lease (" + e.getMessage() + ")", e);
            }
        }
        if (lost != null) throw new IllegalStateException(lost);
    }

    /** For {@link StoreWriter}: checks the lease this JVM holds on {@code root}, if it holds one. */
    static void checkHeldIfLeased(Path root) {
        StoreLease lease = HELD.get(root);
        if (lease != null) lease.checkHeld();
    }

    /** The lease's record as written (owner, host, pid, start, heartbeat, token). */
    public Map<String, Object> record() {
        return Map.copyOf(record);
    }

    public Path file() {
        return file;
    }

    /**
     * Stops the heartbeat and deletes the lease if it is still this run's; removes the store folder when this
     * run created it and left nothing else in it (a run refused by bad input leaves no trace).
     */
    @Override
    public void close() {
        heartbeat.shutdownNow();
        HELD.remove(root, this);
        try {
            Map<String, Object> now = read(fs, file);
            if (now != null && record.get("token").equals(now.get("token"))) fs.delete(file, false);
            if (createdRoot && fs.exists(root) && fs.listStatus(root).length == 0) fs.delete(root, false);
        } catch (IOException | RuntimeException e) {
            System.err.println("blockquant: " + file + ": cannot release the lease (" + e.getMessage()
                    + "); it goes stale in " + STALE_SECONDS);
        }
    }
}
