package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.blockquant.spark.SparkSessions;
import java.util.List;
import org.apache.spark.Partition;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import scala.jdk.javaapi.CollectionConverters;

/** Sequential mode's block task asks for the executor that holds its inputs: the preference Spark's scheduler reads. */
class SparkBlockExecutorTest {

    @Test
    void aBlockTaskPrefersTheExecutorThatRanTheBlockBefore() {
        TaskDevices.Placement before = new TaskDevices.Placement(4, "7", "10.0.0.5", 4242, "1");
        assertEquals("executor_10.0.0.5_7", before.taskLocation());

        SparkSession spark = SparkSessions.getOrCreate("spark-block-executor-test", "local[2]");
        try {
            JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
            JavaRDD<Integer> rdd = SparkBlockExecutor.preferring(sc, List.of(5, 6), before.taskLocation());
            assertEquals(2, rdd.getNumPartitions());
            for (Partition p : rdd.partitions()) {
                assertEquals(List.of("executor_10.0.0.5_7"), CollectionConverters.asJava(rdd.rdd().preferredLocations(p)));
            }
            // an executor that is not there: the tasks run where they can, items in order
            assertEquals(List.of(5, 6), rdd.collect());
        } finally {
            spark.stop();
        }
    }
}
