#!/usr/bin/env bash
# On the GPU machine (no Java, no Maven, no network; nvcc with cuBLAS/cuSOLVER), from the repository root:
#   cluster/gpu/unstage-job.sh STAGE_DIR          (STAGE_DIR: what stage-job.sh wrote, e.g. .stage)
# Unpacks STAGE_DIR/job.tar.xz into STAGE_DIR/unpacked, builds libblockquant_cuda.so with nvcc, and lays out
# what cluster/bin/blockquant and cluster/gpu/start-cluster.sh read, as a build here would:
#   job/target/{classes,blockquant-job-*.jar,runtime-classpath.txt}, core/target/blockquant-core-*.jar,
#   job/target/spark-home/{jars,bin/spark-submit,bin/spark-class}
# with the job jar dated after every source, so the launcher runs the job and never Maven. Then:
#   export JAVA=$PWD/STAGE_DIR/unpacked/jre/bin/java JAVA_HOME=$PWD/STAGE_DIR/unpacked/jre SPARK_HOME=$PWD/job/target/spark-home
#   cluster/bin/blockquant quantize ...            (local mode, GPU 0: --backend auto finds it)
set -euo pipefail
repo=$(pwd)
if [ ! -x "$repo/cluster/bin/blockquant" ]; then
  echo "unstage-job: run it from the repository root (no cluster/bin/blockquant in $repo)" >&2
  exit 1
fi
stage=$(cd "${1:?usage: unstage-job.sh STAGE_DIR}" && pwd)
if [ ! -f "$stage/job.tar.xz" ]; then
  echo "unstage-job: $stage/job.tar.xz not found (made by cluster/gpu/stage-job.sh)" >&2
  exit 1
fi
u=$stage/unpacked
rm -rf "$u"
mkdir -p "$u"
if command -v xz > /dev/null; then
  xz -dc -T0 "$stage/job.tar.xz" | tar -C "$u" -xf -
else # Python's lzma where the machine has no xz
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$stage/job.tar.xz" | tar -C "$u" -xf -
fi
java=$u/jre/bin/java
"$java" -version 2>&1 | head -1

# BQ_CUDA_SOURCE: a blockquant_cuda.cu to build instead of the staged one (a kernel body changed since staging; the
# JNI functions must be the staged ones: CudaNative's header is the staged one)
if [ -n "${BQ_CUDA_SOURCE:-}" ]; then
  cp "$BQ_CUDA_SOURCE" "$u/native/blockquant_cuda.cu"
  echo "unstage-job: CUDA source from $BQ_CUDA_SOURCE"
fi
# the CUDA backend's library, into a jar of its own: CudaNative loads it as a classpath resource, so local
# mode and the executors a worker starts find it without any flag
# (BQ_PREBUILT_CUDA: a folder with the library a previous call built from these very sources, and those sources)
if [ -n "${BQ_PREBUILT_CUDA:-}" ] && cmp -s "$BQ_PREBUILT_CUDA/blockquant_cuda.cu" "$u/native/blockquant_cuda.cu" \
   && cmp -s "$BQ_PREBUILT_CUDA/io_blockquant_cuda_CudaNative.h" "$u/native/include/io_blockquant_cuda_CudaNative.h"; then
  mkdir -p "$u/native/lib" && cp "$BQ_PREBUILT_CUDA/libblockquant_cuda.so" "$u/native/lib/"
  echo "unstage-job: libblockquant_cuda.so from $BQ_PREBUILT_CUDA (built from the same sources)"
else
  bash "$u/native/build-native.sh" "$u/native" "$u/native/include" "$u/native/include" "$u/native/lib"
fi
mkdir -p "$u/native/res/native/linux-x86_64"
if [ -f "$u/native/lib/libblockquant_cuda.so" ]; then
  cp "$u/native/lib/libblockquant_cuda.so" "$u/native/res/native/linux-x86_64/"
  # and where start-cluster.sh points executors' java.library.path: a standalone cluster's executors did not find it
  # inside the shipped jar (measured on the two-GPU machine)
  mkdir -p job/target/native && cp "$u/native/lib/libblockquant_cuda.so" job/target/native/
elif [ "${BQ_UNSTAGE_WITHOUT_CUDA:-0}" = 1 ]; then
  # checking the staged runtime on a machine without nvcc (stage-job.sh's check): no CUDA library
  echo "unstage-job: BQ_UNSTAGE_WITHOUT_CUDA=1: laid out without libblockquant_cuda.so" >&2
else
  echo "unstage-job: libblockquant_cuda.so was not built (above: why); this runtime carries no ND4J, so nothing could compute" >&2
  exit 1
fi
(cd "$u/native/res" && python3 -m zipfile -c "$u/blockquant/blockquant-cuda-native.jar" native)

version=0.1.0-SNAPSHOT
mkdir -p job/target/classes core/target job/target/spark-home/jars job/target/spark-home/bin
rm -rf job/target/classes/* job/target/spark-home/jars/*
cp "$u/blockquant/blockquant-job-$version.jar" job/target/
cp "$u/blockquant/blockquant-core-$version.jar" core/target/
(cd job/target/classes && python3 -m zipfile -e "$u/blockquant/blockquant-job-$version.jar" .)
# classpath: the slim dependency jars (paths as under a Maven repository, which the launcher's cluster mode
# sorts by), the engine, the CUDA library
cp_list=$(tr ':' '\n' < "$u/classpath.txt" | sed "s|^|$u/|" | paste -sd:)
printf '%s' "$cp_list:$repo/core/target/blockquant-core-$version.jar:$u/blockquant/blockquant-cuda-native.jar" > job/target/runtime-classpath.txt
tr ':' '\n' < job/target/runtime-classpath.txt | while read -r j; do ln -sf "$j" job/target/spark-home/jars/; done
cp cluster/gpu/spark-bin/spark-class cluster/gpu/spark-bin/spark-submit job/target/spark-home/bin/

# the launcher rebuilds when a source is newer than the job jar: date the jar after the newest source
newest=$(find core/src/main core/pom.xml job/src/main job/pom.xml pom.xml -type f -printf '%T@\n' | sort -n | tail -1)
now=$(date +%s)
stamp=$(( ${newest%.*} + 2 > now ? ${newest%.*} + 2 : now ))
touch -d "@$stamp" "job/target/blockquant-job-$version.jar" job/target/runtime-classpath.txt
echo "unstage-job: $(tr ':' '\n' < job/target/runtime-classpath.txt | wc -l) jars on the classpath; now:"
echo "  export JAVA=$java JAVA_HOME=$u/jre SPARK_HOME=$repo/job/target/spark-home"
