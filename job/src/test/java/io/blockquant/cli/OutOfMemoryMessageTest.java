package io.blockquant.cli;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import org.junit.jupiter.api.Test;

/** Running out of memory anywhere becomes one line that names what to change, and says the store resumes. */
class OutOfMemoryMessageTest {

    @Test
    void thisJvmOutOfHeapNamesTheHeapSetting() {
        String m = Main.outOfMemory(new IllegalStateException("wrapped", new OutOfMemoryError("Java heap space")));
        assertNotNull(m);
        assertTrue(m.contains("this JVM ran out of heap") && m.contains("BLOCKQUANT_HEAP") && m.contains("--resume"), m);
        assertTrue(!m.contains("\n"), "one line: " + m);
    }

    @Test
    void anExecutorOutOfHeapIsRecognizedFromTheTaskFailureText() {
        // what a cluster's driver receives: the executor's error as text inside the job failure
        Exception e = new RuntimeException("Job aborted due to stage failure: Task 3 in stage 7.0 failed 4 times, most recent"
                + " failure: Lost task 3.3 (executor 2): java.lang.OutOfMemoryError: Java heap space\n\tat x.y(Z.java:1)");
        String m = Main.outOfMemory(e);
        assertTrue(m != null && m.contains("an executor ran out of memory") && m.contains("spark.executor.memory")
                && m.contains("--windows-per-task"), m);
        assertNotNull(Main.outOfMemory(new RuntimeException("ExecutorLostFailure (executor 1 exited caused by one of the"
                + " running tasks) Reason: Executor process exited with exit code 52")));
    }

    @Test
    void aGpuOutOfMemoryNamesTheWindowsPerTask() {
        String m = Main.outOfMemory(new IllegalStateException("CUDA error 2 (out of memory) in cudaMallocAsync of 3.2 GB"));
        assertTrue(m != null && m.contains("GPU") && m.contains("--windows-per-task"), m);
    }

    @Test
    void otherErrorsAreNotOutOfMemory() {
        assertNull(Main.outOfMemory(new IOException("disk full")));
        assertNull(Main.outOfMemory(new IllegalArgumentException("--wbits 9 (expected 2..8)")));
    }
}
