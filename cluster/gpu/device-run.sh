#!/usr/bin/env bash
# The staged job's first run on a GPU machine, from the repository root, after stage-job.sh wrote STAGE_DIR:
#   bash cluster/gpu/device-run.sh STAGE_DIR OUT_DIR [cluster]
# Unstages (nvcc builds the CUDA library), then runs cluster/bin/blockquant unmodified in local mode on GPU 0:
# quantize (GPTQ W4 g64 of tiny-llama, kjv.train, 128 x 512, with its perplexity on kjv.test), eval --store,
# export --format gptq, report; with "cluster" also a standalone cluster (a master, a worker per GPU) running
# quantize (RTN) and eval --store. Every command's output goes to OUT_DIR/<name>.log; a summary to
# OUT_DIR/summary.txt. Each step is cut at BQ_STEP_SECONDS (default 150).
set -uo pipefail
stage=${1:?usage: device-run.sh STAGE_DIR OUT_DIR [cluster]} out=${2:?usage: device-run.sh STAGE_DIR OUT_DIR [cluster]}
mkdir -p "$out"
out=$(cd "$out" && pwd)
limit=${BQ_STEP_SECONDS:-150}
step() { # NAME COMMAND...
  local name=$1; shift
  local t0=$SECONDS rc=0
  timeout "$limit" "$@" > "$out/$name.log" 2>&1 || rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s $(grep -E 'perplexity|ppl|error|store .* written|executor .*GPU' "$out/$name.log" | tail -3 | tr '\n' ' ')" | tee -a "$out/summary.txt"
}
step unstage cluster/gpu/unstage-job.sh "$stage"
[ -f job/target/runtime-classpath.txt ] || { cat "$out/unstage.log"; exit 1; }
u=$(cd "$stage" && pwd)/unpacked
export JAVA=$u/jre/bin/java JAVA_HOME=$u/jre SPARK_HOME=$PWD/job/target/spark-home
nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv > "$out/gpus.txt" 2>&1
text=data-samples/corpus/kjv.test.txt
step quantize cluster/bin/blockquant quantize --model data-samples/models/tiny-llama --calib data-samples/corpus/kjv.train.txt \
  --method gptq --wbits 4 --group 64 --eval-text "$text" --out "$out/stores/llama-gptq" --json
step eval cluster/bin/blockquant eval --store "$out/stores/llama-gptq" --text "$text" --json
step export cluster/bin/blockquant export --store "$out/stores/llama-gptq" --format gptq --out "$out/ckpt/llama-gptq"
step report cluster/bin/blockquant report --store "$out/stores/llama-gptq" --out "$out/llama-gptq.html"
if [ "${3:-}" = cluster ]; then
  step start-cluster cluster/gpu/start-cluster.sh "$out/cluster"
  url=$(cat "$out/cluster/master-url" 2>/dev/null || echo spark://127.0.0.1:7077)
  step c-quantize cluster/bin/blockquant quantize --master "$url" --model data-samples/models/tiny-llama \
    --calib data-samples/corpus/kjv.train.txt --method rtn --wbits 4 --group 64 --no-eval --out "$out/stores/c-rtn" --json
  step c-eval cluster/bin/blockquant eval --master "$url" --store "$out/stores/c-rtn" --text "$text" --json
  kill $(cat "$out/cluster/pids") 2>/dev/null
  find "$out/cluster" -name stderr -path '*app-*' | head -4 | while read -r f; do cp "$f" "$out/executor-$(basename "$(dirname "$f")")-$(basename "$(dirname "$(dirname "$f")")").log"; done
fi
cat "$out/summary.txt"
