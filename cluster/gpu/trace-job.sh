#!/usr/bin/env bash
# Runs the job's real commands on tiny-llama with every JVM logging the classes it loads
# (-Xlog:class+load, CDS off so each JDK class names its module), for stage-job.sh's class list:
# local quantize (rtn, gptq, omniquant; sequential and parallel; an FP8 store), eval --store and --model,
# export --format gptq and fp8, report, and a standalone cluster (master, worker, executor, driver) running
# quantize and eval --store. Uses the full build here (ND4J computes: --backend cpu).
#   cluster/gpu/trace-job.sh TRACE_DIR        -> TRACE_DIR/logs/*.log, TRACE_DIR/results.txt
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
trace=${1:?usage: trace-job.sh TRACE_DIR}
mkdir -p "$trace/logs" "$trace/out"
trace=$(cd "$trace" && pwd)
logs=$trace/logs out=$trace/out
bq=$repo/cluster/bin/blockquant
model=$repo/data-samples/models/tiny-llama
corpus=$repo/data-samples/corpus
small=(--nsamples 4 --seqlen 64 --calib "$corpus/kjv.train.txt" --backend cpu)
# BQ_TRACE_CLUSTER_ONLY=1: only the standalone cluster's commands (the local ones' logs kept);
# BQ_TRACE_FAILURES_ONLY=1: only the failing commands below (the others' logs kept)
only_cluster=${BQ_TRACE_CLUSTER_ONLY:-0}
only_failures=${BQ_TRACE_FAILURES_ONLY:-0}
[ "$only_cluster" = 1 ] || [ "$only_failures" = 1 ] || : > "$trace/results.txt"

# the launcher builds the job first if it must; do that before any trace
"$bq" --help > /dev/null 2>&1 || true

run() { # NAME ARGS...: one traced command, its result line in results.txt
  local name=$1; shift
  local t0=$SECONDS rc=0
  BLOCKQUANT_JAVA_OPTS="-Xshare:off -Xlog:class+load=info:file=$logs/$name.log ${BLOCKQUANT_JAVA_OPTS:-}" \
    "$bq" "$@" > "$out/$name.out" 2> "$out/$name.err" || rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s: $*" | tee -a "$trace/results.txt"
}

# a failing task: Spark's error paths (the executor's handling of a task's exception, the status store eval reads
# after a failed pass) load classes no successful run does; without them a task's error becomes a NoClassDefFoundError
broken=$out/broken-llama
rm -rf "$broken" && cp -r "$model" "$broken"
shard=$(ls "$broken"/model-*.safetensors | tail -1)
head -c $(( $(stat -c %s "$shard") / 2 )) "$shard" > "$shard.half" && mv "$shard.half" "$shard"
if [ "$only_cluster" != 1 ]; then
run fail-quantize quantize --model "$broken" --method rtn --wbits 4 "${small[@]}" --no-eval --out "$out/broken-store"
run fail-eval eval --model "$broken" --text "$corpus/kjv.test.txt" --seqlen 64 --max-windows 4 --backend cpu
fi
[ "$only_failures" = 1 ] && exit 0

if [ "$only_cluster" != 1 ]; then
run q-rtn quantize --method rtn --wbits 4 --group 64 "${small[@]}" --no-eval --out "$out/rtn"
run q-gptq quantize --method gptq --wbits 4 --group 64 "${small[@]}" --eval-text "$corpus/kjv.test.txt" --eval-seqlen 128 --out "$out/gptq"
run q-omni quantize --method omniquant --wbits 4 --group 64 --epochs 1 "${small[@]}" --no-eval --out "$out/omni"
run q-par quantize --mode parallel --method gptq --wbits 3 "${small[@]}" --no-eval --out "$out/par"
run q-fp8 quantize --method rtn --wformat fp8 --wbits 8 "${small[@]}" --no-eval --out "$out/fp8"
run eval-store eval --store "$out/rtn" --text "$corpus/kjv.test.txt" --seqlen 64 --max-windows 4 --backend cpu
run eval-model eval --model "$model" --text "$corpus/kjv.test.txt" --seqlen 64 --max-windows 4 --backend cpu
run export-gptq export --store "$out/gptq" --format gptq --out "$out/ckpt-gptq"
run export-fp8 export --store "$out/fp8" --format fp8 --out "$out/ckpt-fp8"
run report report --store "$out/rtn" --compare "$out/gptq" --out "$out/report.html"
fi

# a standalone cluster: master and two workers offering one (fake) GPU, from a SPARK_HOME of the build's jars (two
# executors registering take driver paths one does not)
sh=$trace/spark-home
mkdir -p "$sh/bin"
ln -sfn "$repo/job/target/spark-home/jars" "$sh/jars"
cp "$repo/cluster/gpu/spark-bin/spark-class" "$repo/cluster/gpu/spark-bin/spark-submit" "$sh/bin/"
export SPARK_HOME=$sh
BLOCKQUANT_FAKE_GPUS=1 BQ_WORKERS_PER_GPU=2 BQ_WORKER_CORES=1 BQ_EXECUTOR_MEMORY=3g BQ_MASTER_PORT=${BQ_MASTER_PORT:-17077} \
  BQ_DAEMON_JAVA_OPTS="-Xshare:off -Xlog:class+load=info:file=$logs/cluster-daemon-%p.log" \
  "$repo/cluster/gpu/start-cluster.sh" "$trace/cluster" | tee -a "$trace/results.txt"
stop_cluster() { kill $(cat "$trace/cluster/pids") 2>/dev/null || true; }
trap stop_cluster EXIT
cat >> "$sh/conf/spark-defaults.conf" <<CONF
spark.executor.defaultJavaOptions -Xshare:off -Xlog:class+load=info:file=$logs/cluster-executor-%p.log
spark.driver.defaultJavaOptions -Xshare:off -Xlog:class+load=info:file=$logs/cluster-driver-%p.log
spark.blockquant.backend cpu
CONF
url=$(cat "$trace/cluster/master-url")
run c-quantize quantize --master "$url" --method rtn --wbits 4 --group 64 "${small[@]}" --no-eval --out "$out/c-rtn"
run c-eval eval --master "$url" --store "$out/c-rtn" --text "$corpus/kjv.test.txt" --seqlen 64 --max-windows 4
ls "$logs" | wc -l | xargs echo "class-load logs:" | tee -a "$trace/results.txt"
