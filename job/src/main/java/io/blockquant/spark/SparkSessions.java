package io.blockquant.spark;

import io.blockquant.tensor.Backends;
import org.apache.spark.SparkConf;
import org.apache.spark.sql.SparkSession;

/**
 * The job's Spark session: the cluster's when launched by spark-submit (spark.master already set),
 * otherwise an embedded local one using every core.
 */
public final class SparkSessions {

    private SparkSessions() {}

    public static SparkSession getOrCreate(String appName, String master) {
        return getOrCreate(appName, master, null);
    }

    /**
     * {@code backend}: the {@code --backend} flag's (or recipe's) cpu, cuda or auto, set as
     * {@code spark.blockquant.backend} for every task; null keeps the key spark-submit gave, else auto.
     */
    public static SparkSession getOrCreate(String appName, String master, String backend) {
        SparkConf conf = new SparkConf(true).setAppName(appName);
        if (backend != null) {
            conf.set(Backends.SPARK_KEY, Backends.Choice.parse(backend, "--backend").name().toLowerCase(java.util.Locale.ROOT));
        }
        if (master != null) conf.setMaster(master);
        if (!conf.contains("spark.master")) {
            conf.setMaster("local[*]");
            conf.setIfMissing("spark.ui.enabled", "false");
            conf.setIfMissing("spark.driver.host", "127.0.0.1");
            conf.setIfMissing("spark.sql.shuffle.partitions", "4");
        }
        conf.setIfMissing("spark.serializer", "org.apache.spark.serializer.KryoSerializer");
        conf.setIfMissing("spark.kryo.registrator", KryoClasses.class.getName());
        SparkSession spark = SparkSession.builder().config(conf).getOrCreate();
        spark.sparkContext().setLogLevel("WARN");
        return spark;
    }
}
