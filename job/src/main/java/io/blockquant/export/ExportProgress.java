package io.blockquant.export;

import io.blockquant.export.ShardPlan.Shard;
import java.io.PrintStream;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerTaskEnd;

/**
 * One line on the driver's stderr as each shard task finishes (shard k/N, its file, tensors, MB, the task's
 * seconds): the shards are written on executors, and their own output stays in executor logs. Only the
 * tasks of the export's job count (the job group given to Spark), each shard once however often it ran.
 */
final class ExportProgress extends SparkListener {

    private final String jobGroup;
    private final List<Shard> shards;
    private final PrintStream err;
    private final long start = System.nanoTime();
    private final Set<Integer> stages = ConcurrentHashMap.newKeySet();
    private final Set<Integer> done = new HashSet<>();
    private final CountDownLatch all;

    ExportProgress(String jobGroup, List<Shard> shards, PrintStream err) {
        this.jobGroup = jobGroup;
        this.shards = shards;
        this.err = err;
        this.all = new CountDownLatch(shards.size());
    }

    @Override
    public void onJobStart(SparkListenerJobStart jobStart) {
        if (jobStart.properties() == null || !jobGroup.equals(jobStart.properties().getProperty("spark.jobGroup.id"))) return;
        for (Object id : scala.jdk.javaapi.CollectionConverters.asJava(jobStart.stageIds())) stages.add((Integer) id);
    }

    @Override
    public void onTaskEnd(SparkListenerTaskEnd taskEnd) {
        if (!stages.contains(taskEnd.stageId()) || !taskEnd.taskInfo().successful()) return;
        int index = taskEnd.taskInfo().index();
        synchronized (done) {
            if (index < 0 || index >= shards.size() || !done.add(index)) return;
            Shard s = shards.get(index);
            err.printf(Locale.ROOT, "export: shard %d/%d %s: %d tensor%s, %.1f MB in %.1f s (%d/%d done, %.0f s elapsed)%n",
                    index + 1, shards.size(), s.file(), s.tensors().size(), s.tensors().size() == 1 ? "" : "s", s.bytes() / 1e6,
                    taskEnd.taskInfo().duration() / 1e3,
                    done.size(), shards.size(), (System.nanoTime() - start) / 1e9);
            err.flush();
        }
        all.countDown();
    }

    /** Waits (a few seconds at most) until every shard's line is out: Spark delivers listener events after the job returns. */
    void awaitLines() {
        try {
            all.await(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
