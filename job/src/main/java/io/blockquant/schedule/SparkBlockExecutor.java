package io.blockquant.schedule;

import io.blockquant.spark.HadoopConf;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.broadcast.Broadcast;
import scala.Tuple2;
import scala.jdk.javaapi.CollectionConverters;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;

/**
 * Block tasks as Spark tasks: one Spark job per {@link #map} call, a task per item, each task binding the tensor
 * backend to the GPU Spark assigned it ({@link TaskDevices}).
 */
public final class SparkBlockExecutor implements BlockExecutor {
    private final JavaSparkContext sc;
    private final TaskDevices devices;
    private final HadoopConf conf;
    private final String jobGroup = "blockquant-" + UUID.randomUUID();

    public SparkBlockExecutor(JavaSparkContext sc) {
        this.sc = sc;
        this.devices = TaskDevices.of(sc);
        this.conf = new HadoopConf(sc.hadoopConfiguration());
    }

    @Override
    public <T, R> List<R> map(List<T> items, int block, Task<T, R> task) {
        return run(sc.parallelize(items, Math.max(1, items.size())), block, task);
    }

    @Override
    public <T, R> List<R> mapNear(List<T> items, int block, int near, Task<T, R> task) {
        String where = null;
        for (TaskDevices.Placement p : devices.placements()) {
            if (p.block() == near && !"driver".equals(p.executor())) where = p.taskLocation();
        }
        return where == null ? map(items, block, task) : run(preferring(sc, items, where), block, task);
    }

    /** One Spark job: {@code task} on every item of {@code items}, each task bound to block {@code block}'s device. */
    private <T, R> List<R> run(JavaRDD<T> items, int block, Task<T, R> task) {
        TaskDevices devices = this.devices;
        HadoopConf conf = this.conf;
        return devices.tasks(items).map(item -> task.run(item, devices.bind(block), conf.get())).collect();
    }

    /** {@code items}, a partition each, every partition preferring the task location {@code where}. */
    static <T> JavaRDD<T> preferring(JavaSparkContext sc, List<T> items, String where) {
        List<Tuple2<T, scala.collection.immutable.Seq<String>>> located = new ArrayList<>();
        for (T item : items) located.add(new Tuple2<>(item, CollectionConverters.asScala(List.of(where)).toList()));
        ClassTag<T> tag = ClassTag$.MODULE$.apply(Object.class);
        return JavaRDD.fromRDD(sc.sc().makeRDD(CollectionConverters.asScala(located).toSeq(), tag), tag);
    }

    @Override
    public int slots() {
        return sc.defaultParallelism();
    }

    @Override
    public Configuration conf() {
        return sc.hadoopConfiguration();
    }

    @Override
    public <T extends Serializable> Shared<T> share(T value) {
        return new BroadcastValue<>(sc.broadcast(value));
    }

    /** A static class, so that tasks serialize the broadcast handle and not this executor. */
    private record BroadcastValue<T>(Broadcast<T> broadcast) implements Shared<T> {
        @Override
        public T value() {
            return broadcast.value();
        }

        @Override
        public void release() {
            broadcast.destroy();
        }
    }

    @Override
    public boolean usesGpus() {
        return devices.usesGpus();
    }

    @Override
    public boolean computesOnGpus() {
        return devices.computesOnGpus();
    }

    @Override
    public List<TaskDevices.Placement> placements() {
        return devices.placements();
    }

    @Override
    public void describe(String work) {
        sc.setJobGroup(jobGroup, work, true);
    }

    @Override
    public void cancelAll() {
        sc.sc().cancelJobGroup(jobGroup);
    }
}
