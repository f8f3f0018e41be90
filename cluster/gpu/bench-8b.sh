#!/usr/bin/env bash
# Issue 20's real-width figures on the GPU machine, from the repository root, after stage-job.sh wrote STAGE_DIR:
#   bash cluster/gpu/bench-8b.sh STAGE_DIR OUT_DIR
# Unstages (nvcc builds the CUDA library, or STAGE_DIR/prebuilt/ has it for these sources), writes a real-width
# Llama checkpoint with `synth` on local disk, runs the PyTorch GPTQ baseline (gptq_baseline.py) on its first
# blocks, then the job exactly as a user would: quantize (GPTQ W4A16 g128, 128 x 2048 of kjv.train, sequential,
# local mode on GPU 0), eval --store on kjv.test, export --format gptq. GPU memory and every JVM's resident set
# are sampled twice a second. OUT_DIR gets summary.txt (a line per step, with its memory peaks), logs.tar.gz (every
# step's output) and the CUDA library built (for STAGE_DIR/prebuilt/ in a later call).
# Environment (defaults in brackets):
#   BQ_SHAPE [llama-3-8b]  BQ_BLOCKS [32]  BQ_BASELINE_BLOCKS [8, 0: none]  BQ_MASTER [local[4]]
#   BQ_QUANTIZE_ARGS [extra quantize flags]  BQ_STEPS [baseline quantize eval export]  BQ_STEP_SECONDS [560]
#   BQ_TINY_RUNS [none; "NAME|JVM FLAGS|QUANTIZE FLAGS;...": tiny-llama quantize runs with their kjv.test perplexity]
#   BQ_TINY_BACKGROUND [0; 1: the tiny runs beside the steps]
#   BQ_MODE [sequential: quantize's --mode]
#   BQ_STEPS may also hold omniquant: OmniQuant LWC W4A16 g128 on the checkpoint (BQ_OMNI_EPOCHS [1], BQ_OMNI_LET [false],
#     BQ_OMNI_ARGS)
#   BQ_KERNEL_TIMES_STEPS [none]: steps whose GPU time per kernel name goes to OUT_DIR/kernels-STEP.txt (kernel-times.cpp)
#   BQ_CLUSTER [0; 1: a standalone cluster here (BQ_WORKERS_PER_GPU workers per GPU) quantizes a BQ_CLUSTER_BLOCKS-block
#     checkpoint of the same shape (default BQ_BLOCKS) in each of BQ_CLUSTER_MODES (default "sequential parallel"), after
#     the same quantize in local mode on one GPU (BQ_CLUSTER_ONE_GPU [sequential parallel]: its modes) for the ratio;
#     BQ_CLUSTER_TINY=1 adds a tiny-llama quantize and eval --store through it]
set -uo pipefail
stage=${1:?usage: bench-8b.sh STAGE_DIR OUT_DIR} out=${2:?usage: bench-8b.sh STAGE_DIR OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
limit=${BQ_STEP_SECONDS:-560}
shape=${BQ_SHAPE:-llama-3-8b} blocks=${BQ_BLOCKS:-32} base_blocks=${BQ_BASELINE_BLOCKS:-8}
steps=${BQ_STEPS-baseline quantize eval export}
work=/tmp/bq-bench
logs=$work/logs
mkdir -p "$work" "$logs"
t_start=$SECONDS

sample() { # NAME PID_TO_WATCH: peak GPU memory and peak RSS per JVM until the watched process ends
  python3 - "$1" "$2" "$logs" <<'PY' &
import os, subprocess, sys, time
name, watched, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
gpu_peak, rss_peak = 0, {}
def alive(pid):
    try: os.kill(pid, 0); return True
    except OSError: return False
while alive(watched):
    try:
        used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=5).stdout.split()
        gpu_peak = max([gpu_peak] + [int(u) for u in used])
    except Exception: pass
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f: cmd = f.read().split(b"\0")
            if not cmd or not cmd[0].endswith(b"java"): continue
            role = "executor" if any(b"CoarseGrainedExecutorBackend" in c for c in cmd) else \
                   "worker" if any(b"deploy.worker.Worker" in c for c in cmd) else \
                   "master" if any(b"deploy.master.Master" in c for c in cmd) else "driver"
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        kb = int(line.split()[1]); key = f"{role} pid {pid}"
                        rss_peak[key] = max(rss_peak.get(key, 0), kb)
        except OSError: pass
    time.sleep(0.5)
with open(f"{out}/mem-{name}.txt", "w") as f:
    f.write(f"{name}: peak GPU memory used {gpu_peak / 1024:.1f} GiB\n")
    for k, v in sorted(rss_peak.items()): f.write(f"{name}: peak RSS {k} {v / 1048576:.2f} GiB\n")
PY
}
step() { # NAME COMMAND...: output to OUT/NAME.log, a line to OUT/summary.txt
  local name=$1; shift
  local t0=$SECONDS rc=0
  local inject=()
  case " ${BQ_KERNEL_TIMES_STEPS:-} " in
    *" $name "*) inject=(env CUDA_INJECTION64_PATH="$work/libkernel-times.so" BQ_KERNEL_TIMES="$out/kernels-$name.txt"
                         LD_LIBRARY_PATH="$cupti_libs:${LD_LIBRARY_PATH:-}") ;;
  esac
  timeout "$limit" "${inject[@]}" "$@" > "$logs/$name.log" 2>&1 &
  local pid=$!
  sample "$name" "$pid"
  local sampler=$!
  wait "$pid" || rc=$?
  wait "$sampler" # only this step's sampler: tiny runs may go on beside (BQ_TINY_BACKGROUND)
  echo "$name rc=$rc $((SECONDS - t0))s $(grep -E 'perplexity|block [0-9]+/[0-9]+ done|tokens CRC|s a block|per block|wrote|error' "$logs/$name.log" | tail -3 | tr '\n' ' ')" | tee -a "$out/summary.txt"
  cat "$logs/mem-$name.txt" >> "$out/summary.txt" 2>/dev/null
  tar -C "$work" -czf "$out/logs.tar.gz" logs
}

. cluster/gpu/bench-env.sh "$stage" "$out"
# BQ_KERNEL_TIMES_STEPS: steps whose GPU time per kernel goes to OUT_DIR/kernels-STEP.txt (kernel-times.cpp, CUPTI)
if [ -n "${BQ_KERNEL_TIMES_STEPS:-}" ]; then
  cuda=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  cupti_libs=$cuda/lib64:$cuda/lib:$cuda/extras/CUPTI/lib64
  nvcc -shared -Xcompiler -fPIC -std=c++17 -I"$cuda/include" -I"$cuda/extras/CUPTI/include" -L"$cuda/lib64" -L"$cuda/lib" \
    -L"$cuda/extras/CUPTI/lib64" -o "$work/libkernel-times.so" cluster/gpu/kernel-times.cpp -lcupti > "$logs/kernel-times.log" 2>&1 \
    || echo "kernel-times: build failed (logs/kernel-times.log)" >> "$out/summary.txt"
fi
nvidia-smi --query-gpu=index,name,memory.used,memory.total,driver_version --format=csv >> "$out/summary.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' >> "$out/summary.txt" 2>&1
calib=data-samples/corpus/kjv.train.txt text=data-samples/corpus/kjv.test.txt

# tiny-llama runs first (the CPU figures' check): BQ_TINY_RUNS="NAME|JVM FLAGS|QUANTIZE FLAGS;..." each a quantize
# of tiny-llama with its kjv.test perplexity (default calibration: the corpus' *.train.txt files)
# (BQ_TINY_BACKGROUND=1: beside the steps below, this script waiting for them at its end; memory peaks then overlap)
tiny() {
  IFS=';' read -ra tiny_runs <<< "${BQ_TINY_RUNS:-}"
  for r in "${tiny_runs[@]}"; do
    IFS='|' read -r name jopts flags <<< "$r"
    # shellcheck disable=SC2086
    BLOCKQUANT_JAVA_OPTS="$BLOCKQUANT_JAVA_OPTS $jopts" step "tiny-$name" cluster/bin/blockquant quantize --master "${BQ_MASTER:-local[4]}" \
      --model data-samples/models/tiny-llama $flags --eval-text "$text" --out "$work/tiny-$name"
  done
}
tiny_pid=
if [ "${BQ_TINY_BACKGROUND:-0}" = 1 ]; then tiny & tiny_pid=$!; else tiny; fi

# the issue's recipe: NAME MASTER CHECKPOINT MODE STORE, GPTQ W4A16 g128 on 128 x 2048 of kjv.train
gptq() {
  rm -rf "$5"
  # shellcheck disable=SC2086
  step "$1" cluster/bin/blockquant quantize --master "$2" --model "$3" --calib "$calib" --method gptq --wbits 4 --group 128 \
    --nsamples 128 --seqlen 2048 --mode "$4" --no-eval --out "$5" ${BQ_QUANTIZE_ARGS:-}
}

ckpt=$work/$shape-$blocks store=$work/store-$shape-$blocks
if [ -n "${steps// }" ] && [ ! -f "$ckpt/config.json" ]; then
  step synth cluster/bin/blockquant synth --shape "$shape" --blocks "$blocks" --tokenizer data-samples/models/tiny-llama --out "$ckpt"
fi
for s in $steps; do
  case $s in
    baseline)
      [ "$base_blocks" -gt 0 ] && step baseline python3 cluster/gpu/gptq_baseline.py --model "$ckpt" --calib "$calib" \
        --nsamples 128 --seqlen 2048 --wbits 4 --group 128 --blocks "$base_blocks" ;;
    quantize)
      gptq quantize "${BQ_MASTER:-local[4]}" "$ckpt" "${BQ_MODE:-sequential}" "$store" ;;
    omniquant)
      # OmniQuant LWC W4A16 g128 on the same windows (issue 20's epoch time; BQ_OMNI_EPOCHS [1], BQ_OMNI_ARGS [extra flags])
      rm -rf "$store-omni"
      # shellcheck disable=SC2086
      step omniquant cluster/bin/blockquant quantize --master "${BQ_MASTER:-local[4]}" --model "$ckpt" --calib "$calib" \
        --method omniquant --wbits 4 --group 128 --lwc --let="${BQ_OMNI_LET:-false}" --epochs "${BQ_OMNI_EPOCHS:-1}" --nsamples 128 \
        --seqlen 2048 --no-eval --out "$store-omni" ${BQ_OMNI_ARGS:-} ;;
    eval)
      step eval cluster/bin/blockquant eval --master "${BQ_MASTER:-local[4]}" --store "$store" --text "$text" ;;
    export)
      rm -rf "$work/export"
      step export cluster/bin/blockquant export --store "$store" --format gptq --out "$work/export"
      ls -la "$work/export" >> "$logs/export.log" 2>&1
      du -sh "$work/export" "$ckpt" >> "$out/summary.txt" 2>&1 ;;
  esac
done
# a standalone cluster on this machine (BQ_CLUSTER=1): a master and BQ_WORKERS_PER_GPU workers per GPU, GPUs found by
# discover-gpus.sh; the same quantize in local mode first (one GPU), then through the cluster in each mode
if [ "${BQ_CLUSTER:-0}" = 1 ]; then
  cblocks=${BQ_CLUSTER_BLOCKS:-$blocks}
  cckpt=$work/$shape-$cblocks
  if [ ! -f "$cckpt/config.json" ]; then
    step c-synth cluster/bin/blockquant synth --shape "$shape" --blocks "$cblocks" --tokenizer data-samples/models/tiny-llama --out "$cckpt"
  fi
  for m in ${BQ_CLUSTER_ONE_GPU-sequential parallel}; do gptq "one-gpu-$m" "${BQ_MASTER:-local[4]}" "$cckpt" "$m" "$work/one-gpu-$m"; done
  step start-cluster cluster/gpu/start-cluster.sh "$work/cluster"
  url=$(cat "$work/cluster/master-url" 2>/dev/null || echo spark://127.0.0.1:7077)
  for m in ${BQ_CLUSTER_MODES:-sequential parallel}; do gptq "cluster-$m" "$url" "$cckpt" "$m" "$work/cluster-$m"; done
  if [ "${BQ_CLUSTER_TINY:-0}" = 1 ]; then
    step c-quantize cluster/bin/blockquant quantize --master "$url" --model data-samples/models/tiny-llama --calib "$calib" \
      --method gptq --wbits 4 --group 64 --nsamples 32 --seqlen 512 --no-eval --out "$work/c-gptq"
    step c-eval cluster/bin/blockquant eval --master "$url" --store "$work/c-gptq" --text "$text"
  fi
  kill $(cat "$work/cluster/pids") 2>/dev/null
  find "$work/cluster" -name stderr -path '*app-*' | head -4 | while read -r f; do
    cp "$f" "$logs/executor-$(basename "$(dirname "$f")")-$(basename "$(dirname "$(dirname "$f")")").log"; done
fi

[ -n "$tiny_pid" ] && wait "$tiny_pid"
echo "all steps: $((SECONDS - t_start)) s" >> "$out/summary.txt"
tar -C "$work" -czf "$out/logs.tar.gz" logs
cat "$out/summary.txt"
