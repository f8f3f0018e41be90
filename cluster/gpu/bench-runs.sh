#!/usr/bin/env bash
# Whole-method runs on the GPU machine, several at once on its one GPU (tiny models leave it mostly idle), from the
# repository root after stage-job.sh wrote STAGE_DIR:
#   BQ_RUNS="NAME|COMMAND;NAME|COMMAND..." [BQ_PARALLEL=3] bash cluster/gpu/bench-runs.sh STAGE_DIR OUT_DIR
# COMMAND is a command line as a user types it (cluster/bin/blockquant quantize ... --eval-text FILE, or python3
# cluster/gpu/omniquant_baseline.py ...), its output in OUT_DIR/NAME.log. OUT_DIR/summary.txt gets a line per run:
# exit code, seconds, and the lines that carry its figures (perplexity, epoch times, baseline summaries).
set -uo pipefail
stage=${1:?usage: bench-runs.sh STAGE_DIR OUT_DIR} out=${2:?usage: bench-runs.sh STAGE_DIR OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
logs=$out
. cluster/gpu/bench-env.sh "$stage" "$out"

run() { # NAME COMMAND: one run, its figures appended to the summary
  local name=$1 cmd=$2 t0=$SECONDS rc=0
  # shellcheck disable=SC2086
  timeout "${BQ_RUN_SECONDS:-560}" $cmd > "$out/$name.log" 2>&1 || rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s $(grep -E 'perplexity on|omniquant baseline|trained in|epoch [0-9]+ loss|error:' "$out/$name.log" \
    | tail -4 | tr '\n' ' ')" >> "$out/summary.txt"
}
IFS=';' read -ra runs <<< "${BQ_RUNS:-}"
for r in "${runs[@]}"; do
  [ -z "${r// }" ] && continue
  while [ "$(jobs -rp | wc -l)" -ge "${BQ_PARALLEL:-3}" ]; do wait -n; done
  run "${r%%|*}" "${r#*|}" &
done
wait
cat "$out/summary.txt"
