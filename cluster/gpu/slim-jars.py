#!/usr/bin/env python3
"""The classes the job's commands load, out of its runtime classpath, for the GPU payload (stage-job.sh).

  slim-jars.py CLASSPATH_FILE LOG_DIR OUT_DIR

LOG_DIR holds -Xlog:class+load logs (trace-job.sh). For every jar of CLASSPATH_FILE (':'-separated) that
supplied a loaded class, OUT_DIR/lib/<its path under the Maven repository> gets a jar with those classes and
the jar's resources (service files, default properties, web UI files, ...), stored uncompressed so that the
payload's xz sees the raw bytes. Left out: ND4J and JavaCPP/OpenBLAS (the GPU runtime computes on CUDA),
jar signatures (a repacked jar's no longer match), and native libraries of other platforms than linux-x86_64.
Small jars (under SMALL_JAR bytes) travel whole: insurance for classes loaded only on paths the traces missed.
Writes OUT_DIR/classpath.txt (the slim jars, in classpath order, relative to OUT_DIR), OUT_DIR/modules.txt
(the JDK modules whose classes were loaded) and prints a summary.
"""
import os, re, sys, zipfile

SMALL_JAR = 32 * 1024
NO_GPU = re.compile(r'/(org/nd4j|org/bytedeco)/')  # ND4J, JavaCPP, OpenBLAS: CPU backend only
NATIVE = re.compile(r'\.(so|so\.\d+|dll|dylib|jnilib|a|lib|exe)$')
SIGNATURE = re.compile(r'^META-INF/[^/]+\.(SF|RSA|DSA|EC)$')
# jars of natives only that travel: Netty's epoll transport for linux-x86_64, whose classes the traces load
NATIVES_ONLY = re.compile(r'/netty-transport-native-epoll-[^/]*linux-x86_64\.jar$')
# whole jars: Spark's launcher runs in spark-class's own JVM (bin/spark-submit), which no trace sees; Jackson's
# parsers reach helper classes only on some inputs (synth's config.json on the GPU machine reached one no trace had);
# Spark's status store (KVStore) is read only after a failed job (eval waits for its other tasks), which no trace had
# picocli parses some flag forms (`--let=false`) through classes no traced command line reached
WHOLE = re.compile(r'/(spark-launcher_[^/]*|spark-kvstore_[^/]*|jackson-(core|databind|annotations)-[^/]*|picocli-[^/]*)\.jar$')
# classes on paths a working trace does not take: a second executor registering grows the driver's TrieMap
# (scala.collection.concurrent.CNode$), and an executor that fails or is lost reaches Spark's loss and exit
# reasons; on the two-GPU machine a missing CNode$ killed the first executor and SparkFatalException hid why
ALWAYS = re.compile(r'^(scala/collection/concurrent/|org/apache/spark/util/SparkFatalException|'
                    r'org/apache/spark/scheduler/(ExecutorProcessLost|ExecutorLossReason|ExecutorKilled|ExecutorExited|'
                    r'ExecutorDecommission|LossReasonPending|'
                    # sequential mode's executor preference on a GPU cluster (BlockExecutor.mapNear): the traces' CPU
                    # cluster never takes that path (several slots an executor), and without these the DAG scheduler's
                    # thread died on the one-GPU machine's two-worker run, leaving the job waiting for ever
                    r'TaskLocation|ExecutorCacheTaskLocation|HostTaskLocation|HDFSCacheTaskLocation)|'
                    r'org/apache/spark/executor/ExecutorExitCode|'
                    # a failed task: the local backend kills the stage's other tasks (scheduler/local/KillTask) and the
                    # DAG scheduler reports through SparkContext's anonymous listeners; without them a task's error left
                    # the job waiting until the call's time ran out. The whole scheduler package (2.7 MB unpacked).
                    r'org/apache/spark/scheduler/|org/apache/spark/SparkContext\$|'
                    # Netty picks another event-executor chooser when the thread count is not a power of two (local[3])
                    r'io/netty/util/concurrent/)')
LINE = re.compile(r'\[class,load\] (\S+) source: (.*)$')
# pom.xml and pom.properties of the jar's own build; a jar index (INDEX.LIST), which would name what is gone
BUILD_INFO = re.compile(r'^META-INF/(maven/|INDEX.LIST$)')
# ICU (Spark SQL's collations) reads its data lazily: the job, which sorts no strings by locale, reads the
# index, root and normalization data; per-locale names, currencies, units and zones stay behind (27 of 28 MB)
# the web UI's scripts, styles and images: no one browses a UI on the device (local mode turns it off; a
# standalone master's and worker's still start, and find their folder, which stays)
UI_ASSETS = re.compile(r'^org/apache/spark/ui/static/.+\.(js|css|png|ico|html|map|svg|gif|woff2?|ttf|eot)$')
ICU_DATA = re.compile(r'^com/ibm/icu/impl/data/icudata[^/]*/')
ICU_KEEP = re.compile(r'^com/ibm/icu/impl/data/icudata[^/]*/((coll/)?(res_index|root|pool)\.res|[^/]+\.(icu|nrm|cfu|spp)|coll/[^/]+\.icu)$')


def loaded(log_dir):
    classes, modules = set(), set()
    for name in os.listdir(log_dir):
        with open(os.path.join(log_dir, name), errors='replace') as f:
            for line in f:
                m = LINE.search(line)
                if not m:
                    continue
                cls, src = m.group(1), m.group(2)
                if src.startswith('jrt:/'):
                    modules.add(src[5:].split('/')[0].strip())
                elif 'shared objects file' in src:
                    raise SystemExit(f'{name}: traced with CDS on (run the JVMs with -Xshare:off): module unknown for {cls}')
                else:
                    classes.add(cls.split('/')[0].replace('.', '/') + '.class')  # hidden classes: Foo/0x... -> Foo
    return classes, modules


def keep_native(entry):
    # this platform's only: DJL's tokenizers, Netty's epoll transport (without it Netty falls back to NIO
    # classes the traces never loaded), snappy/zstd/lz4 for Parquet
    return re.search(r'(linux|Linux)[-/_]?(x86_64|amd64)|_x86_64\.so$', entry) is not None


def main():
    cp_file, log_dir, out = sys.argv[1:4]
    classes, modules = loaded(log_dir)
    entries = open(cp_file).read().strip().split(':')
    m2 = os.path.expanduser('~/.m2/repository') + '/'
    kept, total_classes, total_bytes, dropped_nd4j = [], 0, 0, 0
    for jar in entries:
        if not jar.endswith('.jar') or not os.path.isfile(jar):
            continue  # the engine's classes folder: the payload carries blockquant-core's jar instead
        if NO_GPU.search(jar):
            dropped_nd4j += 1
            continue
        with zipfile.ZipFile(jar) as z:
            infos = z.infolist()
            whole = os.path.getsize(jar) < SMALL_JAR or WHOLE.search(jar) is not None
            def wanted(e):
                n = e.filename
                if n.endswith('/') or SIGNATURE.match(n) or BUILD_INFO.match(n):
                    return False
                if ICU_DATA.match(n) and not ICU_KEEP.match(n):
                    return False
                if UI_ASSETS.match(n):
                    return False
                if n.endswith('.class'):
                    if whole:
                        return True
                    base = re.sub(r'^META-INF/versions/\d+/', '', n)
                    return base in classes or ALWAYS.match(base) is not None
                return not NATIVE.search(n) or keep_native(n)
            chosen = [e for e in infos if wanted(e)]
            n_classes = sum(1 for e in chosen if e.filename.endswith('.class'))
            if n_classes == 0 and not NATIVES_ONLY.search(jar):
                continue
            rel = jar[len(m2):] if jar.startswith(m2) else os.path.basename(jar)
            dst = os.path.join(out, 'lib', rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            # folders too: a resource folder is looked up by name (Spark's web UI: org/apache/spark/ui/static)
            folders = sorted({n[:i + 1] for n in (e.filename for e in chosen) for i in range(len(n)) if n[i] == '/'})
            with zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as o:
                for d in folders:
                    o.writestr(zipfile.ZipInfo(d), b'')
                for e in chosen:
                    data = z.read(e)
                    info = zipfile.ZipInfo(e.filename, e.date_time)
                    info.external_attr = e.external_attr
                    o.writestr(info, data, zipfile.ZIP_STORED)
                    total_bytes += len(data)
            total_classes += n_classes
            kept.append('lib/' + rel)
    with open(os.path.join(out, 'classpath.txt'), 'w') as f:
        f.write(':'.join(kept))
    with open(os.path.join(out, 'modules.txt'), 'w') as f:
        f.write(','.join(sorted(modules)))
    print(f'slim-jars: {len(kept)} of {len(entries)} classpath entries, {total_classes} classes, '
          f'{total_bytes / 1e6:.1f} MB uncompressed; {len(classes)} classes traced; '
          f'{dropped_nd4j} ND4J/JavaCPP jars left out; JDK modules: {",".join(sorted(modules))}')


if __name__ == '__main__':
    main()
