package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.*;

import io.blockquant.Fixtures;
import io.blockquant.cli.Main;
import io.blockquant.model.ModelFormatException;
import io.blockquant.spark.SparkSessions;
import io.blockquant.store.StoreReader;
import io.blockquant.store.TensorRecord;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.spark.sql.SparkSession;
import org.gaul.s3proxy.AuthenticationType;
import org.gaul.s3proxy.S3Proxy;
import org.jclouds.ContextBuilder;
import org.jclouds.blobstore.BlobStoreContext;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

/**
 * The pipeline test's quantize against an S3 endpoint on this machine: an in-process s3proxy (jclouds'
 * in-memory blob store) reached through {@code s3a://}, the store on S3 and {@code _work} on a local
 * {@code --work-dir}. A run killed before block 3 leaves an unfinished store that readers refuse; {@code
 * --resume} finishes it. Opt-in (about a minute here): {@code mvn -B test -pl job -Dtest=S3StoreTest
 * -Dblockquant.s3test=true}.
 */
@EnabledIfSystemProperty(named = "blockquant.s3test", matches = "true")
class S3StoreTest {

    static final java.util.Map<Boolean, Long> COPIES = new java.util.concurrent.ConcurrentHashMap<>();
    static BlobStoreContext blobs;
    static S3Proxy proxy;
    static SparkSession spark;

    @BeforeAll
    static void start() throws Exception {
        blobs = ContextBuilder.newBuilder("transient").credentials("identity", "credential").build(BlobStoreContext.class);
        blobs.getBlobStore().createContainerInLocation(null, "models");
        proxy = S3Proxy.builder().blobStore(blobs.getBlobStore()).endpoint(URI.create("http://127.0.0.1:0"))
                .awsAuthentication(AuthenticationType.AWS_V2_OR_V4, "access", "secret").build();
        proxy.start();
        for (int i = 0; i < 100 && !proxy.getState().equals("STARTED"); i++) Thread.sleep(50);
        spark = SparkSessions.getOrCreate("s3-store-test", "local[2]");
        s3a(spark.sparkContext().hadoopConfiguration(), proxy.getPort());
    }

    /** S3A pointed at the local endpoint (path-style, plain HTTP, static keys). */
    static void s3a(Configuration c, int port) {
        c.set("fs.s3a.endpoint", "http://127.0.0.1:" + port);
        c.set("fs.s3a.endpoint.region", "us-east-1");
        c.setBoolean("fs.s3a.path.style.access", true);
        c.setBoolean("fs.s3a.connection.ssl.enabled", false);
        c.set("fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider");
        c.set("fs.s3a.access.key", "access");
        c.set("fs.s3a.secret.key", "secret");
        c.setInt("fs.s3a.bucket.probe", 0);
        c.setInt("fs.s3a.attempts.maximum", 2);
        c.setInt("fs.s3a.retry.limit", 2);
    }

    @AfterAll
    static void stop() throws Exception {
        if (spark != null) spark.stop();
        if (proxy != null) proxy.stop();
        if (blobs != null) blobs.close();
    }

    /** Parquet files of the store (tensors and layer errors). */
    static long parquetFiles(FileSystem s3, String store) throws java.io.IOException {
        long n = 0;
        var it = s3.listFiles(new org.apache.hadoop.fs.Path(store), true);
        while (it.hasNext()) if (it.next().getPath().getName().endsWith(".parquet")) n++;
        return n;
    }

    static String[] quantize(String out, Path work, String... more) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", Fixtures.model("tiny-llama").toString(),
                "--method", "rtn", "--wbits", "3", "--group", "64", "--nsamples", "8", "--seqlen", "64",
                "--windows-per-task", "2", "--no-eval", "--out", out, "--work-dir", work.toString(), "--master", "local[2]"));
        args.addAll(List.of(more));
        return args.toArray(new String[0]);
    }

    /** S3A's count of {@code key} (object_copy_requests, object_put_requests, ...) in this JVM's s3a file system. */
    static long s3Count(FileSystem s3, String key) {
        Long v = s3.getStorageStatistics().getLong(key);
        return v == null ? -1 : v;
    }

    @ParameterizedTest(name = "blocks written in place: {0}")
    @ValueSource(booleans = {true, false})
    void aStoreOnS3IsCommittedKilledAndResumed(boolean inPlace, @TempDir Path tmp) throws Exception {
        spark.sparkContext().hadoopConfiguration().setBoolean(io.blockquant.store.StoreWriter.WRITE_IN_PLACE, inPlace);
        String store = "s3a://models/tiny-llama/rtn-w3g64-" + (inPlace ? "in-place" : "staged");
        FileSystem fs0 = new org.apache.hadoop.fs.Path(store).getFileSystem(spark.sparkContext().hadoopConfiguration());
        long copies0 = s3Count(fs0, "object_copy_requests");
        Path work = tmp.resolve("work");
        long t0 = System.nanoTime();
        System.setProperty("blockquant.fault.beforeCommit", "3");
        try {
            assertEquals(2, Main.execute(quantize(store, work)));
        } finally {
            System.clearProperty("blockquant.fault.beforeCommit");
        }
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> StoreReader.open(spark, store));
        assertTrue(e.getMessage().contains("not a finished model store"), e.getMessage());
        FileSystem s3 = new org.apache.hadoop.fs.Path(store).getFileSystem(spark.sparkContext().hadoopConfiguration());
        for (int b = 0; b < 3; b++) assertTrue(s3.exists(new org.apache.hadoop.fs.Path(store + "/_committed/block=" + b)));
        assertFalse(s3.exists(new org.apache.hadoop.fs.Path(store + "/_committed/block=3")));
        assertFalse(s3.exists(new org.apache.hadoop.fs.Path(store + "/_work")), "the work area is on --work-dir, not S3");
        assertFalse(s3.exists(new org.apache.hadoop.fs.Path(store + "/_lease.json")), "the killed run released its lease");
        try (var s = Files.list(work)) {
            assertEquals(1, s.count(), "one work folder for the store under --work-dir");
        }

        assertEquals(0, Main.execute(quantize(store, work, "--resume")));
        StoreReader r = StoreReader.open(spark, store);
        assertEquals(List.of(0, 1, 2, 3, 4, 5, 6, 7), r.blocks());
        for (int b = 0; b < 8; b++) {
            List<TensorRecord> t = r.tensors(b); // checksums verified on the way
            assertEquals(7, t.stream().filter(x -> x.kind().equals(TensorRecord.QWEIGHT)).count(), "block " + b);
        }
        assertFalse(r.modelTensors().isEmpty());
        try (var s = Files.list(work)) {
            assertEquals(0, s.count(), "the work area is removed with the finished store");
        }
        System.err.printf("S3StoreTest: in place %s: killed run + resume through s3a in %.1f s, %d object copies, "
                + "%d Parquet files%n", inPlace, (System.nanoTime() - t0) / 1e9, s3Count(s3, "object_copy_requests") - copies0,
                parquetFiles(s3, store));
        COPIES.put(inPlace, s3Count(s3, "object_copy_requests") - copies0);
        if (COPIES.size() == 2) {
            assertTrue(COPIES.get(true) < COPIES.get(false), "writing in place copies fewer objects: " + COPIES);
        }
    }
}
