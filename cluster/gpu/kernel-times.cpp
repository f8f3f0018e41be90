// Where a process's GPU time goes, by kernel name: a CUDA injection library (the CUDA runtime loads it into any
// process, the JVM included, when CUDA_INJECTION64_PATH names it) that records every kernel and copy through
// CUPTI's activity API and, at exit, writes per name the count, total and mean time to $BQ_KERNEL_TIMES (default
// stderr). The GPU machine has CUPTI but no nsys; this is the piece of nsys we need (cluster/gpu/kernel-times.sh).
// Build: nvcc -shared -Xcompiler -fPIC -o libkernel-times.so kernel-times.cpp -lcupti
#include <cupti.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>
#include <algorithm>
#include <chrono>
#include <thread>

namespace {
struct Total {
  unsigned long long count = 0, ns = 0, bytes = 0;
};
std::mutex lock;
std::map<std::string, Total> totals;
unsigned long long first = ~0ull, last = 0;

void add(const std::string& name, unsigned long long start, unsigned long long end, unsigned long long bytes) {
  std::lock_guard<std::mutex> g(lock);
  Total& t = totals[name];
  t.count++;
  t.ns += end - start;
  t.bytes += bytes;
  first = std::min(first, start);
  last = std::max(last, end);
}

const char* copyKind(uint8_t k) {
  switch (k) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "[copy host to device]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "[copy device to host]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "[copy device to device]";
    default: return "[copy other]";
  }
}

void CUPTIAPI requested(uint8_t** buffer, size_t* size, size_t* maxRecords) {
  *size = 16 << 20;
  *buffer = static_cast<uint8_t*>(aligned_alloc(8, *size));
  *maxRecords = 0;
}

void CUPTIAPI completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* r = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS) {
    if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || r->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      auto* k = reinterpret_cast<CUpti_ActivityKernel10*>(r);
      add(k->name ? k->name : "?", k->start, k->end, 0);
    } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      auto* c = reinterpret_cast<CUpti_ActivityMemcpy6*>(r);
      add(copyKind(c->copyKind), c->start, c->end, c->bytes);
    } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      auto* m = reinterpret_cast<CUpti_ActivityMemset4*>(r);
      add("[memset]", m->start, m->end, m->bytes);
    }
  }
  free(buffer);
}

void report() {
  cuptiActivityFlushAll(1);
  std::vector<std::pair<std::string, Total>> rows;
  {
    std::lock_guard<std::mutex> g(lock);
    rows.assign(totals.begin(), totals.end());
  }
  std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.ns > b.second.ns; });
  unsigned long long all = 0;
  for (auto& r : rows) all += r.second.ns;
  const char* path = getenv("BQ_KERNEL_TIMES");
  FILE* out = path ? fopen(path, "w") : stderr;
  if (!out) out = stderr;
  fprintf(out, "GPU busy %.3f s of a %.3f s span, %zu names\n", all / 1e9, last > first ? (last - first) / 1e9 : 0.0,
          rows.size());
  fprintf(out, "%10s %8s %12s %7s %10s  %s\n", "total ms", "share", "count", "mean us", "GB", "name");
  for (auto& r : rows) {
    const Total& t = r.second;
    fprintf(out, "%10.1f %7.2f%% %12llu %7.1f %10.3f  %.160s\n", t.ns / 1e6, all ? 100.0 * t.ns / all : 0.0, t.count,
            t.ns / 1e3 / t.count, t.bytes / 1e9, r.first.c_str());
  }
  if (out != stderr) fclose(out);
}
}  // namespace

extern "C" int InitializeInjection(void) {
  if (cuptiActivityRegisterCallbacks(requested, completed) != CUPTI_SUCCESS) return 0;
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
  atexit(report);
  // the report is also rewritten every 5 s: a process may end before its exit handlers see the last records
  if (getenv("BQ_KERNEL_TIMES")) {
    std::thread([] {
      for (;;) {
        std::this_thread::sleep_for(std::chrono::seconds(5));
        report();
      }
    }).detach();
  }
  return 1;
}
