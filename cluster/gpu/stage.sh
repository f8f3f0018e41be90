#!/usr/bin/env bash
# Prepares the self-contained GPU check on a machine with the full build (Java 17 JDK, Maven, the fixtures),
# for a GPU machine that has only a CUDA toolkit:
#   cluster/gpu/stage.sh OUT_DIR [FIXTURES_DIR]
# OUT_DIR gets check.sh and payload.tar.xz: a jlink'ed Java runtime (java.base only), the engine's classes
# without Spark/Hadoop/ND4J, the CUDA sources with their JNI header, and the arrays of GpuCheckReference (the
# inputs and the CPU backend's outputs). Then, on the GPU machine: `bash OUT_DIR/check.sh OUT_DIR RESULTS_DIR`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
fixtures=${2:-$repo/data-samples}
java_home=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out" "$stage/payload/native/include"

# -am: the job module needs core's classes, which no local repository holds (core is never installed)
(cd "$repo" && mvn -B -q -o compile -pl job -am)
cp_file=$repo/job/target/runtime-classpath.txt
classes=$repo/job/target/classes

# the CPU reference (needs the full classpath: ND4J, Hadoop, the tokenizer)
java -Xmx6g -cp "$classes:$repo/core/target/classes:$(cat "$cp_file")" io.blockquant.gpu.GpuCheckReference \
  "$fixtures/models" "$fixtures/corpus" "$stage/payload"

# the engine's classes (loading none of Spark, Hadoop or ND4J), the CUDA sources, a Java runtime
bash "$repo/cluster/gpu/pack-runtime.sh" "$repo" "$classes" "$java_home" "$stage/payload"

tar -C "$stage" -cf - payload | xz -T0 -1 > "$out/payload.tar.xz"
cp "$repo/cluster/gpu/check.sh" "$out/"
du -sh "$out"/*
