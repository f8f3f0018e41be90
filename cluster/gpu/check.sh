#!/usr/bin/env bash
# The GPU check, on a machine with a GPU and a CUDA toolkit but no Java, Maven or network: unpacks what
# stage.sh made, builds libblockquant_cuda.so with nvcc, and runs io.blockquant.gpu.GpuCheck (the CUDA
# backend against the CPU outputs, then an OmniQuant training step's split and the 7B-shaped block timings).
#   check.sh STAGE_DIR RESULTS_DIR [phase...]     phases: correctness omniquant bench (default: all)
# Extra JVM options through GPU_CHECK_OPTS (e.g. -Dgpu.device=1).
set -uo pipefail
stage=$(cd "$1" && pwd)
results=$2
shift 2
mkdir -p "$results"
work=$(mktemp -d)
if ! tar -C "$work" -xJf "$stage/payload.tar.xz" 2>/dev/null; then
  python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$stage/payload.tar.xz" "$work" || exit 1
fi
p=$work/payload
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$results/gpu.txt"
nvcc --version | tail -2 | tee -a "$results/gpu.txt"
start=$(date +%s)
bash "$p/build-native.sh" "$p/native" "$p/native/include" "$p/native/include" "$p/lib" 2>&1 | tee "$results/build.log"
echo "native build: $(( $(date +%s) - start )) s" | tee -a "$results/build.log"
[ -f "$p/lib/libblockquant_cuda.so" ] || { echo "native build failed"; exit 1; }
"$p/jre/bin/java" -Xmx48g -XX:+UseParallelGC -Dblockquant.cuda.lib="$p/lib/libblockquant_cuda.so" ${GPU_CHECK_OPTS:-} \
  -cp "$p/blockquant.jar" io.blockquant.gpu.GpuCheck "$p" "$@" 2>&1 | tee "$results/check.log"
exit "${PIPESTATUS[0]}"
