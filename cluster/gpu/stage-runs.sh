#!/usr/bin/env bash
# Prepares OmniQuant training and GPTQ runs on a GPU machine that has a CUDA toolkit but no Java, Maven or network:
#   [SEEDS=0,1,...] cluster/gpu/stage-runs.sh OUT_DIR [MODELS_DIR] [CORPUS_DIR]   (calibration draws; default seed 0)
# OUT_DIR gets run-on-gpu.sh and payload.tar.xz: a jlink'ed Java runtime (java.base only), the engine's
# classes, the CUDA sources with their JNI header, and run-inputs.bqa (the three tiny models' weights, the
# 128×512 calibration windows that `quantize --calib kjv.train,fortunes.train,gcide.train --seed 0` draws, and
# the kjv.test tokens that `--eval-text` measures).
# On the GPU machine: `bash OUT_DIR/run-on-gpu.sh OUT_DIR RESULTS_DIR SECONDS RUNNER CONFIG...` (see there).
# Back here, OmniQuantParamsImport turns an OmniQuantRun's block-N.bqa into `quantize --omni-params` files;
# a GptqRun's results are its perplexities (CONFIG.json).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
models=${2:-$repo/data-samples/models}
corpus=${3:-$repo/data-samples/corpus}
java_home=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out" "$stage/payload/native/include"

(cd "$repo" && mvn -B -q -o compile -pl job)
classes=$repo/job/target/classes
java -Xmx6g -cp "$classes:$(cat "$repo/job/target/runtime-classpath.txt")" io.blockquant.gpu.RunInputs \
  "$stage/payload/run-inputs.bqa" 128 512 "${SEEDS:-0}" "$corpus/kjv.train.txt,$corpus/fortunes.train.txt,$corpus/gcide.train.txt" "$corpus/kjv.test.txt" \
  "$models/tiny-llama=llama" "$models/tiny-opt=opt" "$models/tiny-falcon=falcon"

# the engine's classes (loading none of Spark, Hadoop or ND4J), the CUDA sources, a Java runtime
bash "$repo/cluster/gpu/pack-runtime.sh" "$repo" "$classes" "$java_home" "$stage/payload"

tar -C "$stage" -cf - payload | xz -T0 -6 > "$out/payload.tar.xz"
cp "$repo/cluster/gpu/run-on-gpu.sh" "$out/"
du -sh "$out"/*
