#!/usr/bin/env bash
# Spark GPU discovery script (spark.executor.resource.gpu.discoveryScript, spark.worker.resource.gpu.discoveryScript).
# Prints the GPUs this executor or worker can use as Spark's ResourceInformation JSON:
#   {"name": "gpu", "addresses": ["0","1"]}
# Addresses are the indices nvidia-smi reports; inside a YARN or Kubernetes container nvidia-smi already sees only
# the GPUs assigned to it. Fails (exit 1, reason on stderr) when nvidia-smi is missing or fails: an executor that
# asked for a GPU must not start without one.
# Test hook: BLOCKQUANT_FAKE_GPUS=N reports N fake addresses FIRST..FIRST+N-1 without calling nvidia-smi, FIRST being
# BLOCKQUANT_FAKE_GPU_FIRST (default 0): two workers on one test host offer different GPUs, as two GPU nodes would.
set -euo pipefail

if [ -n "${BLOCKQUANT_FAKE_GPUS:-}" ]; then
  if ! [[ "$BLOCKQUANT_FAKE_GPUS" =~ ^[0-9]+$ ]]; then
    echo "discover-gpus: BLOCKQUANT_FAKE_GPUS='$BLOCKQUANT_FAKE_GPUS' is not a count (expected 0, 1, 2, ...)" >&2
    exit 1
  fi
  first="${BLOCKQUANT_FAKE_GPU_FIRST:-0}"
  if ! [[ "$first" =~ ^[0-9]+$ ]]; then
    echo "discover-gpus: BLOCKQUANT_FAKE_GPU_FIRST='$first' is not an index (expected 0, 1, 2, ...)" >&2
    exit 1
  fi
  indices=$(seq "$first" $((first + BLOCKQUANT_FAKE_GPUS - 1)))
else
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "discover-gpus: nvidia-smi not found on PATH of ${HOSTNAME:-this node}: no NVIDIA driver on this node?" >&2
    exit 1
  fi
  if ! indices=$(nvidia-smi --query-gpu=index --format=csv,noheader); then
    echo "discover-gpus: nvidia-smi --query-gpu=index failed on ${HOSTNAME:-this node}" >&2
    exit 1
  fi
fi

addresses=""
for i in $indices; do
  i="${i//[[:space:]]/}"
  if ! [[ "$i" =~ ^[0-9]+$ ]]; then
    echo "discover-gpus: unexpected GPU index '$i' from nvidia-smi" >&2
    exit 1
  fi
  addresses="${addresses:+$addresses,}\"$i\""
done
echo "{\"name\": \"gpu\", \"addresses\": [$addresses]}"
