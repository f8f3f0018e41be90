#!/usr/bin/env bash
# A Spark standalone cluster on this host: a master and one worker per GPU that cluster/gpu/discover-gpus.sh
# finds (each worker offers exactly its GPU, through a resources file), from a SPARK_HOME with Spark's jars
# (job/target/spark-home: the build's, or the one cluster/gpu/unstage-job.sh lays out).
#   cluster/gpu/start-cluster.sh WORK_DIR
# Writes WORK_DIR/{master.log,worker-N.log,pids,master-url} and $SPARK_HOME/conf/spark-defaults.conf (one GPU
# per executor and per task, as conf/spark-defaults.conf; sizes below), so that afterwards
#   SPARK_HOME=... cluster/bin/blockquant quantize --master $(cat WORK_DIR/master-url) ...
# runs on it. Stop it with: kill $(cat WORK_DIR/pids)
# Environment: SPARK_HOME (default job/target/spark-home), JAVA_HOME (default: the java on the PATH),
#   BQ_MASTER_PORT (7077), BQ_WORKER_CORES (cores per worker = per executor, default: cores / GPUs),
#   BQ_EXECUTOR_MEMORY (heap per executor, default 24g), BQ_DAEMON_JAVA_OPTS (extra flags for master and workers),
#   BQ_WORKERS_PER_GPU (default 1; 2 on a one-GPU machine proves the two-worker path: each worker offers the same GPU),
#   BQ_EXECUTOR_LIBRARY_PATH (the executors' java.library.path; default job/target/native when it has libblockquant_cuda.so).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${1:?usage: start-cluster.sh WORK_DIR}
mkdir -p "$work"
work=$(cd "$work" && pwd)
export SPARK_HOME=${SPARK_HOME:-$repo/job/target/spark-home}
export SPARK_SCALA_VERSION=${SPARK_SCALA_VERSION:-2.13} # workers build executor commands with Spark's launcher
if [ ! -d "$SPARK_HOME/jars" ]; then
  echo "start-cluster: no Spark jars in $SPARK_HOME/jars (build the job, or run cluster/gpu/unstage-job.sh)" >&2
  exit 1
fi
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if [ -z "${JAVA_HOME:-}" ]; then
  JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
  export JAVA_HOME # the workers start their executors with it
fi

gpus=$("$repo/cluster/gpu/discover-gpus.sh") || exit 1
addresses=$(echo "$gpus" | sed -e 's/.*\[//' -e 's/\].*//' -e 's/[", ]/ /g')
per=${BQ_WORKERS_PER_GPU:-1}
addresses=$(for a in $addresses; do for ((w = 0; w < per; w++)); do echo "$a"; done; done)
n=$(echo $addresses | wc -w)
if [ "$n" = 0 ]; then
  echo "start-cluster: discover-gpus.sh found no GPU on ${HOSTNAME:-this host}: $gpus" >&2
  exit 1
fi
cores=${BQ_WORKER_CORES:-$(( $(nproc) / n > 0 ? $(nproc) / n : 1 ))}
memory=${BQ_EXECUTOR_MEMORY:-24g}
port=${BQ_MASTER_PORT:-7077}
url="spark://127.0.0.1:$port"

opens="--add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/sun.nio.cs=ALL-UNNAMED --add-opens=java.base/sun.security.action=ALL-UNNAMED --add-opens=java.base/sun.util.calendar=ALL-UNNAMED -Djdk.reflect.useDirectMethodHandle=false -Dio.netty.tryReflectionSetAccessible=true"

# what spark-submit (cluster/bin/blockquant --master spark://...) reads: one GPU per executor and per task
mkdir -p "$SPARK_HOME/conf"
cat > "$SPARK_HOME/conf/spark-defaults.conf" <<CONF
# written by cluster/gpu/start-cluster.sh for the cluster at $url ($n GPUs)
spark.executor.resource.gpu.amount               1
spark.task.resource.gpu.amount                   1
spark.executor.cores                             $cores
spark.task.cpus                                  $cores
spark.cores.max                                  $((cores * n))
spark.executorEnv.OMP_NUM_THREADS                $cores
spark.executor.memory                            $memory
spark.driver.host                                127.0.0.1
spark.driver.bindAddress                         127.0.0.1
spark.ui.enabled                                 false
spark.scheduler.minRegisteredResourcesRatio      1.0
spark.scheduler.maxRegisteredResourcesWaitingTime 120s
spark.task.maxFailures                           4
spark.driver.maxResultSize                       8g
spark.kryoserializer.buffer.max                  1024m
spark.rpc.message.maxSize                        1024
CONF
# where executors find libblockquant_cuda.so (CudaNative falls back to java.library.path): unstage-job.sh leaves it in
# job/target/native; on the two-GPU machine the executors did not find the copy inside the shipped jar
native=${BQ_EXECUTOR_LIBRARY_PATH:-}
if [ -z "$native" ] && [ -f "$repo/job/target/native/libblockquant_cuda.so" ]; then native=$repo/job/target/native; fi
if [ -n "$native" ]; then
  echo "spark.executor.extraLibraryPath                  $native" >> "$SPARK_HOME/conf/spark-defaults.conf"
fi

: > "$work/pids"
daemon() { # NAME MAIN ARGS...: one daemon JVM, its pid recorded
  local name=$1; shift
  # shellcheck disable=SC2086
  nohup "$java" -Xmx1g $opens ${BQ_DAEMON_JAVA_OPTS:-} -Dspark.master.rest.enabled=false "${props[@]}" \
    -cp "$SPARK_HOME/conf/:$SPARK_HOME/jars/*" "$@" > "$work/$name.log" 2>&1 &
  echo $! >> "$work/pids"
}
props=()
daemon master org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$port" --webui-port 0
i=0
for a in $addresses; do
  echo "[{\"id\": {\"componentName\": \"spark.worker\", \"resourceName\": \"gpu\"}, \"addresses\": [\"$a\"]}]" > "$work/gpu-$i.json"
  mkdir -p "$work/work-$i"
  props=(-Dspark.worker.resource.gpu.amount=1 "-Dspark.worker.resourcesFile=$work/gpu-$i.json")
  daemon "worker-$i" org.apache.spark.deploy.worker.Worker "$url" --host 127.0.0.1 --cores "$cores" \
    --memory "$(( ${memory%g} + 4 ))g" --webui-port 0 --work-dir "$work/work-$i"
  i=$((i + 1))
done
for ((k = 0; k < n; k++)); do
  for _ in $(seq 120); do
    grep -q "Successfully registered with master" "$work/worker-$k.log" 2>/dev/null && break
    sleep 1
  done
  if ! grep -q "Successfully registered with master" "$work/worker-$k.log"; then
    echo "start-cluster: worker $k did not register with $url in 120 s; see $work/worker-$k.log and $work/master.log" >&2
    exit 1
  fi
done
echo "$url" > "$work/master-url"
echo "start-cluster: $url, $n workers (GPUs $addresses, $cores cores, executor heap $memory each); stop: kill \$(cat $work/pids)"
