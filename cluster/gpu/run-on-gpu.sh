#!/usr/bin/env bash
# OmniQuant training or GPTQ runs on a GPU machine (what stage-runs.sh made):
#   run-on-gpu.sh STAGE_DIR RESULTS_DIR SECONDS OmniQuantRun FAMILY:WBITS:GROUP:ABITS:LWC:LET:EPOCHS...
#   run-on-gpu.sh STAGE_DIR RESULTS_DIR SECONDS GptqRun FAMILY:WEIGHTS:GROUP:ACTS:CONSTRAINT:LORC...
# Unpacks the payload and builds libblockquant_cuda.so once per machine (into $OMNI_WORK, default
# ./.gpu-work), copies parameters of blocks finished by an earlier call from STAGE_DIR/resume/, runs every
# configuration at once (io.blockquant.gpu.RUNNER: one thread and CUDA stream each) for at most SECONDS, and
# packs each run's logs and results (OmniQuant: finished blocks; GPTQ: perplexities) into RESULTS_DIR/runs.tar.gz.
# An OmniQuant block cut off by the time limit is trained again from its start by the next call.
set -uo pipefail
stage=$(cd "$1" && pwd)
results=$2
seconds=$3
runner=$4
shift 4
work=${OMNI_WORK:-$PWD/.gpu-work}
mkdir -p "$results" "$work/runs"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$results/gpu.txt"
if [ ! -f "$work/payload/lib/libblockquant_cuda.so" ]; then
  start=$(date +%s)
  tar -C "$work" -xJf "$stage/payload.tar.xz" || exit 1
  bash "$work/payload/build-native.sh" "$work/payload/native" "$work/payload/native/include" "$work/payload/native/include" \
    "$work/payload/lib" > "$results/build.log" 2>&1
  echo "unpack and native build: $(( $(date +%s) - start )) s" | tee -a "$results/build.log"
  [ -f "$work/payload/lib/libblockquant_cuda.so" ] || { cat "$results/build.log"; exit 1; }
fi
[ -d "$stage/resume" ] && cp -rn "$stage/resume/." "$work/runs/"
p=$work/payload
start=$(date +%s)
timeout --signal=KILL "$seconds" "$p/jre/bin/java" -Xmx48g -XX:+UseParallelGC -Dblockquant.cuda.lib="$p/lib/libblockquant_cuda.so" \
  -cp "$p/blockquant.jar" "io.blockquant.gpu.$runner" "$p/run-inputs.bqa" "$work/runs" "$@" > "$results/run.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s" >> "$results/run.log"
tar -C "$work" -czf "$results/runs.tar.gz" runs
tail -n 3 "$work"/runs/*.log
