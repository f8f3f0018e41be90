# Sourced by the GPU machine's bench scripts (bench-8b.sh, bench-runs.sh) from the repository root, with $logs set
# (where unstage.log goes): unstages STAGE_DIR ($1) once per payload (a second script in the same call keeps it: a JVM of the
# first may still run on it), unpacks the corpora that travel compressed, and exports what cluster/bin/blockquant
# needs to run on the staged runtime. OUT_DIR ($2) gets the CUDA library built (for STAGE_DIR/prebuilt/ in a later call).
# the CUDA library: built by nvcc, or the one a previous call built from the same sources
if [ -f "$1/prebuilt/libblockquant_cuda.so" ]; then export BQ_PREBUILT_CUDA=$1/prebuilt; fi
payload=$(stat -c '%s %Y' "$1/job.tar.xz")
if [ "$(cat "$1/unpacked/.payload" 2>/dev/null)" = "$payload" ] && [ -f job/target/runtime-classpath.txt ]; then
  echo "unstage: kept from an earlier run of this call" >> "$2/summary.txt"
  # a later call's tree may bring sources dated after the jar: the launcher must not try to rebuild (no Maven here)
  touch job/target/blockquant-job-*.jar job/target/runtime-classpath.txt
else
  t0=$SECONDS
  if cluster/gpu/unstage-job.sh "$1" > "$logs/unstage.log" 2>&1; then echo "$payload" > "$1/unpacked/.payload"; fi
  echo "unstage $((SECONDS - t0))s" >> "$2/summary.txt"
fi
[ -f job/target/runtime-classpath.txt ] || { cat "$logs/unstage.log"; exit 1; }
# corpora that travel compressed (the call's 64 MiB): STAGE_DIR/corpus.tar.xz into data-samples/corpus
[ -f "$1/corpus.tar.xz" ] && tar -C data-samples/corpus -xJf "$1/corpus.tar.xz"
u=$(cd "$1" && pwd)/unpacked
cp "$u/native/lib/libblockquant_cuda.so" "$2/" 2>/dev/null
export JAVA=$u/jre/bin/java JAVA_HOME=$u/jre SPARK_HOME=$PWD/job/target/spark-home
export BLOCKQUANT_HEAP=${BLOCKQUANT_HEAP:-48g}
# the staged runtime carries no Spark UI classes (no trace loads them)
export BLOCKQUANT_JAVA_OPTS="-Dspark.ui.enabled=false ${BLOCKQUANT_JAVA_OPTS:-}"
