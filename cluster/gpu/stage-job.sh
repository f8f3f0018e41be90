#!/usr/bin/env bash
# Packs what one call to the GPU machine carries to run the real job there (Spark, local or a standalone
# cluster, on the CUDA backend), into OUT_DIR inside the repository (git-ignored: the lead names it in carry):
#   cluster/gpu/stage-job.sh OUT_DIR [TRACE_DIR]        e.g. cluster/gpu/stage-job.sh .stage
# OUT_DIR/job.tar.xz holds
#   jre/         a jlink'ed Java runtime: the JDK modules the traced commands loaded, debug stripped, no man pages
#   lib/         the classes those commands loaded, per dependency jar (slim-jars.py), without ND4J, with DJL's
#                linux-x86_64 libtokenizers.so; classpath.txt lists them in classpath order
#   blockquant/  the job's and the engine's jars
#   native/      blockquant_cuda.cu, CudaNative's JNI header, jni.h, build-native.sh
# TRACE_DIR (default .stage-trace) holds trace-job.sh's class-load logs; they are made when missing.
# On the GPU machine: cluster/gpu/unstage-job.sh OUT_DIR (see docs/cluster-and-gpus.md).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?usage: stage-job.sh OUT_DIR [TRACE_DIR]}
trace=${2:-$repo/.stage-trace}
java_home=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}
version=0.1.0-SNAPSHOT
job_jar=$repo/job/target/blockquant-job-$version.jar
core_jar=$repo/core/target/blockquant-core-$version.jar

if [ ! -f "$job_jar" ] || [ ! -f "$core_jar" ] || [ -n "$(find "$repo/core/src/main" "$repo/job/src/main" -newer "$job_jar" -print -quit)" ]; then
  (cd "$repo" && mvn -B -q -o -DskipTests -pl job -am package)
fi
if [ ! -d "$trace/logs" ] || [ -z "$(ls -A "$trace/logs")" ]; then
  "$repo/cluster/gpu/trace-job.sh" "$trace"
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
p=$work/payload
mkdir -p "$p/blockquant" "$p/native/include/linux"

python3 "$repo/cluster/gpu/slim-jars.py" "$repo/job/target/runtime-classpath.txt" "$trace/logs" "$p" | tee "$work/slim.txt"
cp "$job_jar" "$core_jar" "$p/blockquant/"
# local variable tables are for debuggers (line numbers stay, for stack traces): 9 % of the xz'ed classes
asm=$(ls ~/.m2/repository/org/ow2/asm/asm/9.*/asm-9.*.jar | grep -v sources | sort -V | tail -1)
"$java_home/bin/java" -cp "$asm" "$repo/cluster/gpu/StripLocals.java" "$p/lib"

# the JDK modules the traces loaded (jlink adds what they require), but jdk.localedata: one class of it is
# loaded (the CLDR provider's index), 10 MB of other locales' data that the job never formats in; and none
# of java.desktop's native libraries (AWT, fonts, images, sound): only java.beans of it is used (by Log4j).
# Plus jdk.incubator.vector: Spark's launcher starts drivers and executors with --add-modules of it
modules=$( (tr ',' '\n' < "$p/modules.txt"; echo; echo jdk.incubator.vector) | grep -vx -e 'jdk.localedata' -e '' | sort -u | paste -sd,)
"$java_home/bin/jlink" --add-modules "$modules" --strip-debug --no-header-files --no-man-pages \
  --strip-native-debug-symbols=objcopy="$(command -v objcopy)" \
  --exclude-files='**/libawt*.so,**/libfontmanager.so,**/libjavajpeg.so,**/liblcms.so,**/libmlib_image.so,**/libsplashscreen.so,**/libjsound.so,**/psfont*' \
  --output "$p/jre"
rm -f "$p/jre/lib/src.zip"

# what nvcc needs on the device: the CUDA sources, the JNI header of CudaNative, the JDK's jni.h
"$java_home/bin/javac" -h "$p/native/include" -d "$work/h" "$repo/core/src/main/java/io/blockquant/cuda/CudaNative.java"
cp "$repo/core/src/main/native/"*.cu "$p/native/"
cp "$java_home/include/jni.h" "$p/native/include/"
cp "$java_home/include/linux/jni_md.h" "$p/native/include/linux/"
cp "$repo/cluster/gpu/build-native.sh" "$p/native/"
git -C "$repo" rev-parse HEAD > "$p/commit.txt" 2>/dev/null || true

rm -f "$out/job.tar.xz"
# one solid stream, a dictionary as large as a jar set: Scala's and Spark's classes repeat one another.
# BQ_XZ overrides (e.g. "-1 -T0" for a quick check)
tar -C "$p" -cf - . | xz ${BQ_XZ:---lzma2=preset=9e,dict=192MiB -T1} > "$out/job.tar.xz"
classes=$(find "$p/lib" "$p/blockquant" -name '*.jar' -print0 | xargs -0 python3 -c '
import sys, zipfile
print(sum(n.endswith(".class") for j in sys.argv[1:] for n in zipfile.ZipFile(j).namelist()))')
{
  echo "staged $(date -u +%FT%TZ) from $(cat "$p/commit.txt" 2>/dev/null)"
  echo "payload $out/job.tar.xz: $(du -b "$out/job.tar.xz" | cut -f1) bytes ($(du -m "$out/job.tar.xz" | cut -f1) MiB)"
  echo "unpacked: jre $(du -sm "$p/jre" | cut -f1) MiB, lib $(du -sm "$p/lib" | cut -f1) MiB, blockquant $(du -sm "$p/blockquant" | cut -f1) MiB"
  echo "classes: $classes in $(find "$p/lib" "$p/blockquant" -name '*.jar' | wc -l) jars"
  echo "modules: $modules"
  cat "$work/slim.txt"
} | tee "$out/STAGED.txt"
