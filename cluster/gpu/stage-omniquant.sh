#!/usr/bin/env bash
# Prepares OmniQuant training on a GPU machine that has a CUDA toolkit but no Java, Maven or network:
#   cluster/gpu/stage-omniquant.sh OUT_DIR [MODELS_DIR] [CORPUS_DIR]
# OUT_DIR gets run-omniquant.sh and payload.tar.xz: a jlink'ed Java runtime (java.base only), the engine's
# classes, the CUDA sources with their JNI header, and omni-inputs.bqa (the three tiny models' weights and the
# 128×512 calibration windows that `quantize --calib kjv.train,fortunes.train,gcide.train --seed 0` draws).
# On the GPU machine: `bash OUT_DIR/run-omniquant.sh OUT_DIR RESULTS_DIR SECONDS CONFIG...` (see there); back
# here, OmniQuantParamsImport turns each run's block-N.bqa into `quantize --omni-params` files.
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
java -Xmx6g -cp "$classes:$(cat "$repo/job/target/runtime-classpath.txt")" io.blockquant.gpu.OmniQuantRunInputs \
  "$stage/payload/omni-inputs.bqa" 128 512 0 "$corpus/kjv.train.txt,$corpus/fortunes.train.txt,$corpus/gcide.train.txt" \
  "$models/tiny-llama=llama" "$models/tiny-opt=opt" "$models/tiny-falcon=falcon"

(cd "$classes" && "$java_home/bin/jar" cf "$stage/payload/blockquant.jar" io)
"$java_home/bin/javac" -h "$stage/payload/native/include" -d "$stage/h" \
  "$repo/job/src/main/java/io/blockquant/cuda/CudaNative.java"
cp "$repo/job/src/main/native/blockquant_cuda.cu" "$stage/payload/native/"
cp "$java_home/include/jni.h" "$java_home/include/linux/jni_md.h" "$stage/payload/native/include/"
cp "$repo/cluster/gpu/build-native.sh" "$stage/payload/"
"$java_home/bin/jlink" --add-modules java.base --strip-debug --no-header-files --no-man-pages --compress=2 \
  --strip-native-debug-symbols=objcopy="$(command -v objcopy)" --output "$stage/payload/jre"

tar -C "$stage" -cf - payload | xz -T0 -6 > "$out/payload.tar.xz"
cp "$repo/cluster/gpu/run-omniquant.sh" "$out/"
du -sh "$out"/*
