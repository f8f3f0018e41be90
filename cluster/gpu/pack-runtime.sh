#!/usr/bin/env bash
# What every GPU payload carries, into PAYLOAD_DIR: the engine's classes (core's and the job's CLASSES_DIR) as
# blockquant.jar, the CUDA sources
# with CudaNative's JNI header, build-native.sh, and a jlink'ed Java runtime (java.base only).
#   pack-runtime.sh REPO CLASSES_DIR JAVA_HOME PAYLOAD_DIR    (used by stage.sh)
set -euo pipefail
repo=$1 classes=$2 java_home=$3 payload=$4
mkdir -p "$payload/native/include"
h=$(mktemp -d)
trap 'rm -rf "$h"' EXIT
"$java_home/bin/jar" cf "$payload/blockquant.jar" -C "$repo/core/target/classes" io -C "$classes" io
"$java_home/bin/javac" -h "$payload/native/include" -d "$h" "$repo/core/src/main/java/io/blockquant/cuda/CudaNative.java"
cp "$repo/core/src/main/native/blockquant_cuda.cu" "$payload/native/"
cp "$java_home/include/jni.h" "$java_home/include/linux/jni_md.h" "$payload/native/include/"
cp "$repo/cluster/gpu/build-native.sh" "$payload/"
"$java_home/bin/jlink" --add-modules java.base --strip-debug --no-header-files --no-man-pages --compress=2 \
  --strip-native-debug-symbols=objcopy="$(command -v objcopy)" --output "$payload/jre"
