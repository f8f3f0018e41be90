package io.blockquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.file.Paths;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;

/** A relative local path means the same on an executor as where the command ran; other paths are left alone. */
class UserPathsTest {

    private final Configuration conf = new Configuration();

    @Test
    void relativeLocalPathsBecomeAbsolute() {
        String cwd = Paths.get("").toAbsolutePath().toString();
        assertEquals(cwd + "/data-samples/models/tiny-llama", UserPaths.absolute("data-samples/models/tiny-llama", conf));
        assertEquals(cwd + "/stores/x", UserPaths.absolute("./stores/x", conf));
    }

    @Test
    void absolutePathsAndOtherFileSystemsStay() {
        assertEquals("/tmp/store", UserPaths.absolute("/tmp/store", conf));
        assertEquals("file:/tmp/store", UserPaths.absolute("file:/tmp/store", conf));
        assertEquals("s3a://bucket/store", UserPaths.absolute("s3a://bucket/store", conf));
        assertEquals("hdfs://nn:8020/user/x/store", UserPaths.absolute("hdfs://nn:8020/user/x/store", conf));
        assertNull(UserPaths.absolute(null, conf));
    }
}
