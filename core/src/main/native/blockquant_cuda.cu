// blockquant's CUDA backend: the kernels and cuBLAS/cuSOLVER calls behind io.blockquant.cuda.CudaNative.
// Every function works on the calling thread's context for its bound device (stream, cuBLAS and cuSOLVER
// handles), so executor threads bound to different GPUs, or sharing one, never share a stream.
// Semantics follow the CPU backend (tensor/Nd4jBackend and quant/*): the same float/double choices, the
// same rounding (rint: half to even), the same saturation of the FP formats.

#include <jni.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cusolverDn.h>
#include <cstdint>
#include <cstdio>
#include <cmath>
#include <vector>
#include <string>
#include <mutex>
#include <algorithm>
#include <type_traits>
#include "io_blockquant_cuda_CudaNative.h"

namespace {

constexpr int kMaxDevices = 64;

struct Context {
  int device = -1;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
};

thread_local Context* t_contexts[kMaxDevices] = {};
thread_local Context* t_current = nullptr;

// Contexts given back by threads whose task ended (CudaNative.releaseThread), per device: a thread that binds
// takes one before it creates its own, so a JVM holds as many streams and handle sets per GPU as it runs
// tasks on that GPU at once (one, on a Spark executor with one GPU task), not one per thread it ever had.
std::mutex g_idle_mutex;
std::vector<Context*> g_idle[kMaxDevices];

// A C++ exception carrying the message for Java; every JNI entry point turns it into a RuntimeException.
struct Failure {
  std::string message;
};

void check(cudaError_t e, const char* what, int line) {
  if (e != cudaSuccess) {
    throw Failure{std::string(what) + " (line " + std::to_string(line) + "): " + cudaGetErrorString(e)};
  }
}
void check(cublasStatus_t s, const char* what, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw Failure{std::string(what) + " (line " + std::to_string(line) + "): cuBLAS status " + std::to_string((int)s)};
  }
}
void check(cusolverStatus_t s, const char* what, int line) {
  if (s != CUSOLVER_STATUS_SUCCESS) {
    throw Failure{std::string(what) + " (line " + std::to_string(line) + "): cuSOLVER status " + std::to_string((int)s)};
  }
}
#define CHECK(call) check((call), #call, __LINE__)
#define CHECK_LAUNCH() check(cudaGetLastError(), "kernel launch", __LINE__)

Context& ctx() {
  if (t_current == nullptr) throw Failure{"no CUDA device bound to this thread (CudaNative.bind first)"};
  return *t_current;
}

void bindDevice(int device) {
  if (device < 0 || device >= kMaxDevices) throw Failure{"device index out of range"};
  CHECK(cudaSetDevice(device));
  Context* c = t_contexts[device];
  if (c == nullptr) {
    std::lock_guard<std::mutex> lock(g_idle_mutex);
    if (!g_idle[device].empty()) {
      c = g_idle[device].back();
      g_idle[device].pop_back();
      CHECK(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));  // its last user may have asked for TF32
      t_contexts[device] = c;
    }
  }
  if (c == nullptr) {
    c = new Context();  // lives as long as the process (a thread gives it back, never frees it): tensors freed later name its stream
    c->device = device;
    CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CHECK(cublasCreate(&c->blas));
    CHECK(cublasSetStream(c->blas, c->stream));
    CHECK(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));  // exact float32 unless TF32 is asked for
    CHECK(cusolverDnCreate(&c->solver));
    CHECK(cusolverDnSetStream(c->solver, c->stream));
    // keep freed blocks in the pool: allocation per tensor then costs no driver call
    cudaMemPool_t pool;
    CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t threshold = UINT64_MAX;
    CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    t_contexts[device] = c;
  }
  t_current = c;
}

// Temporary device memory for one call, freed on the stream when it goes out of scope.
struct Scratch {
  void* ptr = nullptr;
  cudaStream_t stream;
  Scratch(size_t bytes, cudaStream_t s) : stream(s) { CHECK(cudaMallocAsync(&ptr, bytes == 0 ? 1 : bytes, s)); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Scratch(Scratch&& o) noexcept : ptr(o.ptr), stream(o.stream) { o.ptr = nullptr; }
  ~Scratch() {
    if (ptr) cudaFreeAsync(ptr, stream);
  }
  template <typename T> T* as() { return static_cast<T*>(ptr); }
};

template <typename T>
Scratch uploadArray(const T* host, size_t count, cudaStream_t s) {
  Scratch d(count * sizeof(T), s);
  CHECK(cudaMemcpyAsync(d.ptr, host, count * sizeof(T), cudaMemcpyHostToDevice, s));
  return d;
}

// a Java int[] copied to the host (JNI gives no pointer to keep across a kernel launch)
std::vector<jint> intsOf(JNIEnv* env, jintArray a) {
  std::vector<jint> host(env->GetArrayLength(a));
  env->GetIntArrayRegion(a, 0, (jsize)host.size(), host.data());
  return host;
}

template <typename F>
void guarded(JNIEnv* env, F&& body) {
  try {
    body();
  } catch (const Failure& f) {
    jclass cls = env->FindClass("java/lang/IllegalStateException");
    env->ThrowNew(cls, ("CUDA backend: " + f.message).c_str());
  }
}

inline float* F(jlong p) { return reinterpret_cast<float*>(p); }

unsigned gridFor(long long n, int threads = 256) {
  long long b = (n + threads - 1) / threads;
  return (unsigned)(b > 65535LL * 16 ? 65535LL * 16 : (b < 1 ? 1 : b));
}

// ---- block reductions ---------------------------------------------------------------------------

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct MinOp {
  __device__ float operator()(float a, float b) const { return fminf(a, b); }
};

template <typename T, typename Op>
__device__ T warpReduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// op over the block (blockDim.x a multiple of 32, at most 1024), identity its neutral element; every thread
// gets the result.
template <typename T, typename Op>
__device__ T blockReduce(T v, T identity, Op op) {
  __shared__ T shared[32];
  __shared__ T total;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warpReduce(v, op);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T s = lane < (int)(blockDim.x >> 5) ? shared[lane] : identity;
    s = warpReduce(s, op);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

template <typename T>
__device__ T blockSum(T v) { return blockReduce(v, T(0), SumOp()); }
__device__ float blockMax(float v) { return blockReduce(v, -INFINITY, MaxOp()); }
__device__ float blockMin(float v) { return blockReduce(v, INFINITY, MinOp()); }

// kernels that walk rows with a block each: at most 2^20 blocks (each strides on), threads a warp multiple ≤ 256
unsigned rowsGrid(long long rows) {
  return (unsigned)std::max(1LL, std::min(rows, 1LL << 20));
}
int rowThreadsFor(int width) {
  return std::min(256, std::max(32, (width + 31) / 32 * 32));
}

int rowThreads(int cols) {
  int t = 32;
  while (t < cols && t < 1024) t <<= 1;
  return t < 128 ? (cols <= 32 ? 32 : 128) : t > 256 ? 256 : t;
}

// ---- layout kernels -------------------------------------------------------------------------------

__global__ void transposeKernel(const float* in, float* out, int rows, int cols) {
  __shared__ float tile[32][33];
  int x = blockIdx.x * 32 + threadIdx.x, y = blockIdx.y * 32 + threadIdx.y;
  for (int j = 0; j < 32; j += 8)
    if (x < cols && y + j < rows) tile[threadIdx.y + j][threadIdx.x] = in[(long long)(y + j) * cols + x];
  __syncthreads();
  x = blockIdx.y * 32 + threadIdx.x;
  y = blockIdx.x * 32 + threadIdx.y;
  for (int j = 0; j < 32; j += 8)
    if (x < rows && y + j < cols) out[(long long)(y + j) * rows + x] = tile[threadIdx.x][threadIdx.y + j];
}

void transposeOn(const float* in, float* out, int rows, int cols, cudaStream_t s) {
  dim3 block(32, 8), grid((cols + 31) / 32, (rows + 31) / 32);
  transposeKernel<<<grid, block, 0, s>>>(in, out, rows, cols);
  CHECK_LAUNCH();
}

__global__ void gatherRowsKernel(const float* table, int width, const int* rows, long long n, float* out) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n * width; i += (long long)gridDim.x * blockDim.x) {
    long long r = i / width;
    out[i] = table[(long long)rows[r] * width + i % width];
  }
}

__global__ void selectColumnsKernel(const float* in, int rows, int cols, const int* columns, int count, float* out) {
  long long n = (long long)rows * count;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long r = i / count;
    out[i] = in[r * cols + columns[i % count]];
  }
}

// out [A, C, B, D] from in [A, B, C, D], one (a, c, b) row of D elements (a head's dims) per block at a time: the
// index arithmetic once a row, not once an element (64-bit divisions per element made the head permutations
// compute-bound, 5× their memory time at 8B)
__global__ void permute0213Kernel(const float* in, int A, int B, int C, int D, float* out) {
  long long rows = (long long)A * C * B;
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    long long b = r % B, t = r / B;
    long long c = t % C, a = t / C;
    const float* src = in + ((a * B + b) * C + c) * D;
    float* dst = out + r * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) dst[d] = src[d];
  }
}

// [n·groups, per] from [n, per]: slab i·groups + g is slab i (blockIdx.y walks slabs, x the elements of one)
__global__ void repeatKernel(const float* in, long long n, int groups, long long per, float* out) {
  for (long long slab = blockIdx.y; slab < n * groups; slab += gridDim.y) {
    const float* src = in + (slab / groups) * per;
    float* dst = out + slab * per;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < per; e += (long long)gridDim.x * blockDim.x)
      dst[e] = src[e];
  }
}

// its backward: slab i of [n, per] sums slabs i·groups .. i·groups + groups − 1
__global__ void sumRepeatedKernel(const float* in, long long n, int groups, long long per, float* out) {
  for (long long i = blockIdx.y; i < n; i += gridDim.y) {
    const float* src = in + i * groups * per;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < per; e += (long long)gridDim.x * blockDim.x) {
      float s = 0.f;
      for (int g = 0; g < groups; g++) s += src[g * per + e];
      out[i * per + e] = s;
    }
  }
}

// ---- element-wise -------------------------------------------------------------------------------

__global__ void binaryKernel(int op, const float* a, const float* b, float* out, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float x = a[i], y = b[i];
    out[i] = op == 0 ? x + y : op == 1 ? x - y : op == 2 ? x * y : x / y;
  }
}

__global__ void scaleKernel(const float* a, float f, float* out, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = a[i] * f;
}

__global__ void rowVectorKernel(int op, const float* a, const float* row, float* out, long long n, int cols) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float r = row[i % cols];
    out[i] = op == 0 ? a[i] + r : a[i] * r;
  }
}

// activations by io.blockquant.tensor.Activation ordinal: RELU, SILU, GELU, GELU_TANH
__device__ float activateOne(int act, float x) {
  switch (act) {
    case 0: return x > 0.f ? x : 0.f;
    case 1: return x * (1.f / (1.f + expf(-x)));
    case 2: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    default: {
      float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.f + tanhf(u));
    }
  }
}

__device__ float activationGrad(int act, float x) {
  switch (act) {
    case 0: return x > 0.f ? 1.f : 0.f;
    case 1: {
      float s = 1.f / (1.f + expf(-x));
      return s * (1.f + x * (1.f - s));
    }
    case 2: {
      float phi = 0.5f * (1.f + erff(x * 0.70710678118654752f));
      float density = expf(-0.5f * x * x) * 0.3989422804014327f;
      return phi + x * density;
    }
    default: {
      float c = 0.7978845608028654f;
      float th = tanhf(c * (x + 0.044715f * x * x * x));
      float du = c * (1.f + 3.f * 0.044715f * x * x);
      return 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * du;
    }
  }
}

__global__ void activateKernel(int act, const float* x, float* out, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = activateOne(act, x[i]);
}

__global__ void activationBackwardKernel(int act, const float* x, const float* dy, float* out, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = activationGrad(act, x[i]) * dy[i];
}

// act(gate)·up and its backward in one pass each (the same float32 products as activate, then mul)
__global__ void gatedActivationKernel(int act, const float* g, const float* u, float* out, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = activateOne(act, g[i]) * u[i];
}

__global__ void gatedActivationBackwardKernel(int act, const float* g, const float* u, const float* dy, float* dg, float* du,
                                              long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float x = g[i], d = dy[i];
    dg[i] = activationGrad(act, x) * (d * u[i]);
    du[i] = d * activateOne(act, x);
  }
}

// ---- reductions -----------------------------------------------------------------------------------

__global__ void sumKernel(const float* a, long long n, bool squares, double* out) {
  double s = 0;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    double v = a[i];
    s += squares ? v * v : v;
  }
  s = blockSum(s);
  if (threadIdx.x == 0) atomicAdd(out, s);
}

__global__ void rowLogSumExpKernel(const float* a, int cols, double* out) {
  const float* row = a + (long long)blockIdx.x * cols;
  float m = -INFINITY;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, row[i]);
  m = blockMax(m);
  double s = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) s += exp((double)(row[i] - m));
  s = blockSum(s);
  if (threadIdx.x == 0) out[blockIdx.x] = log(s) + m;
}

__global__ void pickPerRowKernel(const float* a, int rows, int cols, const int* columns, float* out) {
  for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (long long)gridDim.x * blockDim.x)
    out[r] = a[r * cols + columns[r]];
}

__global__ void rowAbsMaxKernel(const float* a, int cols, float* out) {
  const float* row = a + (long long)blockIdx.x * cols;
  float m = 0.f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, fabsf(row[i]));
  m = blockMax(m);
  if (threadIdx.x == 0) out[blockIdx.x] = m;
}

// Per window of seq rows, each column's max and min ([windows, 2·cols]: maxima, then minima). A thread walks one
// column down the window's rows, so a warp reads consecutive columns of a row (the calibration input ranges).
__global__ void windowColumnRangesKernel(const float* a, int seq, int cols, float* out) {
  int c = blockIdx.x * blockDim.x + threadIdx.x, w = blockIdx.y;
  if (c >= cols) return;
  const float* x = a + (long long)w * seq * cols + c;
  float mx = -INFINITY, mn = INFINITY;
  for (int r = 0; r < seq; r++) {
    float v = x[(long long)r * cols];
    mx = fmaxf(mx, v);
    mn = fminf(mn, v);
  }
  out[(long long)w * 2 * cols + c] = mx;
  out[(long long)w * 2 * cols + cols + c] = mn;
}

// Column sums Σ_r a[r,c]·(b ? b[r,c] − (sub ? sub[r] : 0) : 1)·(rowScale ? rowScale[r] : 1) in float64:
// bias gradients (a only), RMSNorm's dw (a = dy, b = x, rowScale = 1/rms), LayerNorm's dw (sub = mean).
__global__ void columnReduceKernel(const float* a, const float* b, const double* sub, const double* rowScale,
                                   int rows, int cols, double* out) {
  __shared__ double part[8][33];
  int c = blockIdx.x * 32 + threadIdx.x;
  double s = 0;
  if (c < cols) {
    for (int r = blockIdx.y * 8 + threadIdx.y; r < rows; r += gridDim.y * 8) {
      long long i = (long long)r * cols + c;
      double v = a[i];
      if (b) v *= (double)b[i] - (sub ? sub[r] : 0.0);
      if (rowScale) v *= rowScale[r];
      s += v;
    }
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double t = 0;
    for (int j = 0; j < 8; j++) t += part[j][threadIdx.x];
    atomicAdd(out + c, t);
  }
}

__global__ void doubleToFloatKernel(const double* in, float* out, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = (float)in[i];
}

__global__ void floatToDoubleKernel(const float* in, double* out, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = in[i];
}

void columnReduce(const float* a, const float* b, const double* sub, const double* rowScale, int rows, int cols,
                  float* out, cudaStream_t s) {
  Scratch acc(sizeof(double) * cols, s);
  CHECK(cudaMemsetAsync(acc.ptr, 0, sizeof(double) * cols, s));
  int ySlices = (rows + 8 * 64 - 1) / (8 * 64);  // about 64 rows per thread
  if (ySlices > 1024) ySlices = 1024;
  if (ySlices < 1) ySlices = 1;
  dim3 block(32, 8), grid((cols + 31) / 32, ySlices);
  columnReduceKernel<<<grid, block, 0, s>>>(a, b, sub, rowScale, rows, cols, acc.as<double>());
  CHECK_LAUNCH();
  doubleToFloatKernel<<<gridFor(cols), 256, 0, s>>>(acc.as<double>(), out, cols);
  CHECK_LAUNCH();
}

// ---- norms ----------------------------------------------------------------------------------------

// RMSNorm as the CPU backend: 1/rms = (float)(1/sqrt((float)(mean x²) + eps)), y = w·(x·inv).
__device__ float rmsInverse(const float* row, int cols, float eps) {
  double ss = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) ss += (double)row[i] * row[i];
  ss = blockSum(ss);
  float meanSq = (float)ss / cols + eps;
  return (float)(1.0 / sqrt((double)meanSq));
}

__global__ void rmsNormKernel(const float* x, const float* w, float eps, int cols, float* out) {
  long long off = (long long)blockIdx.x * cols;
  float inv = rmsInverse(x + off, cols, eps);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) out[off + i] = w[i] * (x[off + i] * inv);
}

__global__ void rmsNormBackwardKernel(const float* x, const float* w, float eps, const float* dy, int cols,
                                      float* dx, double* invOut) {
  long long off = (long long)blockIdx.x * cols;
  double inv = rmsInverse(x + off, cols, eps);
  double dot = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) dot += (double)w[i] * dy[off + i] * x[off + i];
  dot = blockSum(dot);
  double c = dot * inv * inv * inv / cols;
  for (int i = threadIdx.x; i < cols; i += blockDim.x)
    dx[off + i] = (float)(inv * w[i] * dy[off + i] - c * x[off + i]);
  if (threadIdx.x == 0) invOut[blockIdx.x] = inv;
}

// LayerNorm in float64 like the CPU backend: two-pass mean and biased variance.
__device__ void meanInv(const float* row, int cols, float eps, double& mean, double& inv) {
  double s = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) s += row[i];
  mean = blockSum(s) / cols;
  double v = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    double d = row[i] - mean;
    v += d * d;
  }
  v = blockSum(v) / cols;
  inv = 1.0 / sqrt(v + eps);
}

__global__ void layerNormKernel(const float* x, const float* w, const float* b, float eps, int cols, float* out) {
  long long off = (long long)blockIdx.x * cols;
  double mean, inv;
  meanInv(x + off, cols, eps, mean, inv);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = (float)((x[off + i] - mean) * inv) * w[i];
    out[off + i] = b ? v + b[i] : v;
  }
}

__global__ void layerNormBackwardKernel(const float* x, const float* w, float eps, const float* dy, int cols,
                                        float* dx, double* meanOut, double* invOut) {
  long long off = (long long)blockIdx.x * cols;
  double mean, inv;
  meanInv(x + off, cols, eps, mean, inv);
  double sumG = 0, sumGX = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    double gw = (double)w[i] * dy[off + i];
    sumG += gw;
    sumGX += gw * ((x[off + i] - mean) * inv);
  }
  sumG = blockSum(sumG) / cols;
  sumGX = blockSum(sumGX) / cols;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    double xhat = (x[off + i] - mean) * inv;
    dx[off + i] = (float)(inv * ((double)w[i] * dy[off + i] - sumG - xhat * sumGX));
  }
  if (threadIdx.x == 0) {
    meanOut[blockIdx.x] = mean;
    invOut[blockIdx.x] = inv;
  }
}

// ---- attention ------------------------------------------------------------------------------------

// "rotate half" RoPE; the angle pos·invFreq[i] in float32, its cosine and sine in float64 then rounded, as
// the CPU backend's (float) Math.cos(angle).
// The table of one call: cs[2·(p·half + i)] = cos, then sign·sin, of the angle p·invFreq[i]. Computed once per
// (position, frequency), not once per element of every head: the float64 cosine and sine made RoPE compute-bound.
__global__ void ropeTableKernel(int seq, const float* invFreq, int half, float sign, float* cs) {
  for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < seq * half; t += gridDim.x * blockDim.x) {
    float angle = (float)(t / half) * invFreq[t % half];
    cs[2 * t] = (float)cos((double)angle);
    cs[2 * t + 1] = sign * (float)sin((double)angle);
  }
}

// One (head, position) row of d elements per block at a time; row r is position r % seq.
__global__ void ropeKernel(const float* in, long long rows, int seq, int d, const float* cs, int half, float* out) {
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* x = in + r * d;
    const float* t = cs + 2LL * (r % seq) * half;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
      if (j >= 2 * half) {
        out[r * d + j] = x[j];
        continue;
      }
      int i = j < half ? j : j - half;
      float c = t[2 * i], s = t[2 * i + 1];
      float x1 = x[i], x2 = x[half + i];
      out[r * d + j] = j < half ? x1 * c - x2 * s : x2 * c + x1 * s;
    }
  }
}

// One block per score row; row r of a [n, seq, seq] tensor is query position r % seq, which sees keys 0..pos.
__global__ void causalSoftmaxKernel(const float* scores, int seq, float scale, float* out) {
  long long off = (long long)blockIdx.x * seq;
  int pos = blockIdx.x % seq;
  float m = -INFINITY;
  for (int j = threadIdx.x; j <= pos; j += blockDim.x) m = fmaxf(m, scores[off + j] * scale);
  m = blockMax(m);
  float s = 0.f;
  for (int j = threadIdx.x; j <= pos; j += blockDim.x) s += expf(scores[off + j] * scale - m);
  s = blockSum(s);
  for (int j = threadIdx.x; j < seq; j += blockDim.x)
    out[off + j] = j <= pos ? expf(scores[off + j] * scale - m) / s : 0.f;
}

// The same two with a row's causal part held in registers (E elements a thread, the same element-to-thread
// mapping and reductions, so the same results): the forward reads its row once instead of three times, the backward
// reads only the causal part (p is zero past it).
template <int E>
__global__ void causalSoftmaxRowKernel(const float* scores, int seq, float scale, float* out) {
  long long off = (long long)blockIdx.x * seq;
  int pos = blockIdx.x % seq;
  float v[E], m = -INFINITY;
#pragma unroll
  for (int k = 0; k < E; k++) {
    int j = threadIdx.x + k * blockDim.x;
    v[k] = j <= pos ? scores[off + j] * scale : -INFINITY;
    m = fmaxf(m, v[k]);
  }
  m = blockMax(m);
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < E; k++) {
    int j = threadIdx.x + k * blockDim.x;
    if (j <= pos) {
      v[k] = expf(v[k] - m);
      s += v[k];
    }
  }
  s = blockSum(s);
#pragma unroll
  for (int k = 0; k < E; k++) {
    int j = threadIdx.x + k * blockDim.x;
    if (j < seq) out[off + j] = j <= pos ? v[k] / s : 0.f;
  }
}

template <int E>
__global__ void causalSoftmaxBackwardRowKernel(const float* p, const float* dp, int seq, float scale, float* out) {
  long long off = (long long)blockIdx.x * seq;
  int pos = blockIdx.x % seq;
  float pv[E], dv[E], dot = 0.f;
#pragma unroll
  for (int k = 0; k < E; k++) {
    int j = threadIdx.x + k * blockDim.x;
    pv[k] = j <= pos ? p[off + j] : 0.f;
    dv[k] = j <= pos ? dp[off + j] : 0.f;
    dot += pv[k] * dv[k];
  }
  dot = blockSum(dot);
#pragma unroll
  for (int k = 0; k < E; k++) {
    int j = threadIdx.x + k * blockDim.x;
    if (j < seq) out[off + j] = j <= pos ? (dv[k] - dot) * pv[k] * scale : 0.f;
  }
}

__global__ void causalSoftmaxBackwardKernel(const float* p, const float* dp, int seq, float scale, float* out) {
  long long off = (long long)blockIdx.x * seq;
  float dot = 0.f;
  for (int j = threadIdx.x; j < seq; j += blockDim.x) dot += p[off + j] * dp[off + j];
  dot = blockSum(dot);
  for (int j = threadIdx.x; j < seq; j += blockDim.x) out[off + j] = (dp[off + j] - dot) * p[off + j] * scale;
}

// ---- fake quantization ----------------------------------------------------------------------------

// quant/IntQuantizer: min-max over the group widened to include zero, scale = (max − min)/maxq,
// zero = rint(−min/scale) (symmetric: (maxq + 1)/2), level = clamp(rint(x/scale) + zero, 0, maxq).
__global__ void fakeQuantizeWeightKernel(const float* w, int cols, int group, int bits, bool symmetric, float* out) {
  int groups = cols / group;
  long long off = (long long)(blockIdx.x / groups) * cols + (long long)(blockIdx.x % groups) * group;
  float mn = 0.f, mx = 0.f;
  for (int i = threadIdx.x; i < group; i += blockDim.x) {
    mn = fminf(mn, w[off + i]);
    mx = fmaxf(mx, w[off + i]);
  }
  mn = blockMin(mn);
  mx = blockMax(mx);
  int maxq = (1 << bits) - 1;
  if (symmetric) {
    float a = fmaxf(fabsf(mn), mx);
    mn = -a;
    mx = a;
  }
  if (mn == 0.f && mx == 0.f) {
    mn = -1.f;
    mx = 1.f;
  }
  float scale = (mx - mn) / maxq;
  float zero = symmetric ? (maxq + 1) / 2.f : rintf(-mn / scale);
  for (int i = threadIdx.x; i < group; i += blockDim.x) {
    float q = rintf(w[off + i] / scale) + zero;
    int level = (int)fmaxf(0.f, fminf((float)maxq, q));
    out[off + i] = scale * (level - zero);
  }
}

__global__ void fakeQuantizeTokensKernel(const float* x, int cols, int bits, float* out) {
  long long off = (long long)blockIdx.x * cols;
  float m = 0.f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, fabsf(x[off + i]));
  m = blockMax(m);
  int qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
  float scale = m / qmax;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = x[off + i];
    if (m == 0.f) {
      out[off + i] = v;
    } else {
      float q = rintf(v / scale);
      out[off + i] = scale * fmaxf((float)qmin, fminf((float)qmax, q));
    }
  }
}

// quant/FpFormat.encode then decode: nearest value, ties to an even mantissa, saturating at ±max.
__device__ float fpRound(float x, int M, int bias, int maxCode, float maxValue) {
  if (isnan(x)) return x;
  bool negative = signbit(x);
  float a = fabsf(x);
  float v;
  if (a >= maxValue) {
    v = maxValue;
  } else if (a == 0.f) {
    v = 0.f;
  } else {
    int e = max(ilogbf(a), 1 - bias);
    long long q = (long long)rint(ldexp((double)a, M - e));
    if (q >= (2LL << M)) {
      q >>= 1;
      e++;
    }
    int code = q < (1LL << M) ? (int)q : ((e + bias) << M) | (int)(q - (1LL << M));
    if (code > maxCode) code = maxCode;
    int ce = code >> M, cm = code & ((1 << M) - 1);
    v = ce == 0 ? ldexpf((float)cm, 1 - bias - M) : ldexpf((float)((1 << M) + cm), ce - bias - M);
  }
  return negative ? -v : v;
}

// a row's min and max over the block (every thread gets both)
__device__ void rowMinMax(const float* row, int cols, float* mn, float* mx) {
  float lo = INFINITY, hi = -INFINITY;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    lo = fminf(lo, row[i]);
    hi = fmaxf(hi, row[i]);
  }
  *mn = blockMin(lo);
  *mx = blockMax(hi);
}

// The OmniQuant reference's activation rule (IntQuantizer.fakeQuantizeTokensAsym): per row, min-max scale clamped to
// [1e-5, 1e4], zero point rint(−min/scale) clamped to ±1e4, levels in [0, 2^b − 1]; one block per row.
__global__ void fakeQuantizeTokensAsymKernel(const float* x, int cols, int bits, float* out) {
  long long off = (long long)blockIdx.x * cols;
  float mn, mx;
  rowMinMax(x + off, cols, &mn, &mx);
  int qmax = (1 << bits) - 1;
  float scale = fmaxf(1e-5f, fminf(1e4f, (mx - mn) / qmax));
  float zero = rintf(fmaxf(-1e4f, fminf(1e4f, -mn / scale)));
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    float q = rintf(x[off + i] / scale) + zero;
    out[off + i] = (fmaxf(0.f, fminf((float)qmax, q)) - zero) * scale;
  }
}

__global__ void fakeQuantizeTokensFpKernel(const float* x, int cols, int M, int bias, int maxCode, float maxValue,
                                           float* out) {
  long long off = (long long)blockIdx.x * cols;
  float m = 0.f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, fabsf(x[off + i]));
  m = blockMax(m);
  float scale = m / maxValue;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = x[off + i];
    out[off + i] = m == 0.f ? v : fpRound(v / scale, M, bias, maxCode, maxValue) * scale;
  }
}

// The backward of the three per-token quantizers above as the OmniQuant reference's autograd takes it
// (quant/TokenQuantBackward): straight through inside the clamp range, and the row's dynamic scale's gradient,
// sum dy·(level − x/s) (in range) or dy·(level − zero) (cut), into the row's extremes, ties sharing it evenly.
// rule 0: symmetric INT (s = absmax/(2^(b−1) − 1)); 1: asymmetric INT (s = (max − min)/(2^b − 1), clamped to
// [1e-5, 1e4], no gradient while clamped); 2: FP (s = absmax/maxValue). One block per row.
__global__ void fakeQuantizeTokensBackwardKernel(const float* x, const float* dy, int cols, int rule, int bits, int M, int bias,
                                                 int maxCode, float maxValue, float* dx) {
  long long off = (long long)blockIdx.x * cols;
  float mn, mx;
  rowMinMax(x + off, cols, &mn, &mx);
  float absMax = fmaxf(fabsf(mn), fabsf(mx));
  int qmaxAsym = (1 << bits) - 1, qmaxSym = (1 << (bits - 1)) - 1, qminSym = -(1 << (bits - 1));
  float raw = rule == 1 ? (mx - mn) / qmaxAsym : absMax / (rule == 0 ? (float)qmaxSym : maxValue);
  float scale = rule == 1 ? fmaxf(1e-5f, fminf(1e4f, raw)) : raw;
  float zero = rule == 1 ? rintf(fmaxf(-1e4f, fminf(1e4f, -mn / scale))) : 0.f;
  bool routes = rule == 1 ? raw == scale : absMax != 0.f;
  double dScale = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = x[off + i], d = dy[off + i];
    if (!routes && rule != 1) {  // an all-zero row is left as it is
      dx[off + i] = d;
      continue;
    }
    float t = v / scale;
    if (rule == 1) {
      float rounded = rintf(t), pre = rounded + zero;
      bool in = pre >= 0.f && pre <= (float)qmaxAsym;
      dx[off + i] = in ? d : 0.f;
      dScale += (double)d * (in ? rounded - t : (pre < 0.f ? 0.f : (float)qmaxAsym) - zero);
    } else {
      float level = rule == 0 ? fmaxf((float)qminSym, fminf((float)qmaxSym, rintf(t))) : fpRound(t, M, bias, maxCode, maxValue);
      dx[off + i] = d;
      dScale += (double)d * (level - t);
    }
  }
  if (!routes) return;  // uniform across the block: every thread leaves here or none
  dScale = blockSum(dScale);
  int tiesMax = 0, tiesMin = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = x[off + i];
    if (rule == 1) {
      tiesMax += v == mx;
      tiesMin += v == mn;
    } else {
      tiesMax += fabsf(v) == absMax;
    }
  }
  tiesMax = blockSum(tiesMax);
  tiesMin = blockSum(tiesMin);
  float q = rule == 1 ? (float)qmaxAsym : rule == 0 ? (float)qmaxSym : maxValue;
  float toMax = (float)(dScale / q / tiesMax), toMin = rule == 1 ? (float)(-dScale / q / tiesMin) : 0.f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = x[off + i];
    if (rule == 1) {
      if (v == mx) dx[off + i] += toMax;
      if (v == mn) dx[off + i] += toMin;
    } else if (fabsf(v) == absMax) {
      dx[off + i] += v < 0.f ? -toMax : toMax;  // d|v|/dv = sign(v)
    }
  }
}

// ---- linear algebra helpers -----------------------------------------------------------------------

// zero the strict upper triangle of a row-major [n, n] matrix
// a = f·a, then a[i, i] += d[i]: a Hessian sum scaled to 2/n·Σ, damped and its dead columns set, in place
// a grid-stride loop, as every kernel launched with gridFor must be: gridFor caps the grid at 2^28 threads, and a
// Llama-2-70B down_proj's Hessian has 28672² = 822M elements (rows from 9362 on were left unscaled and undamped, and
// the Cholesky failed there)
__global__ void scaleAddDiagonalKernel(float* a, long long n, float f, const float* d) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n * n; i += (long long)gridDim.x * blockDim.x) {
    float v = a[i] * f;
    long long r = i / n;
    if (r == i - r * n) v += d[r];
    a[i] = v;
  }
}

__global__ void lowerTriangleKernel(float* a, int n) {
  long long total = (long long)n * n;
  for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < total; o += (long long)gridDim.x * blockDim.x)
    if (o % n > o / n) a[o] = 0.f;
}

// row-major sgemm through column-major cuBLAS: C = op(A)·op(B) is Cᵀ = op(B)ᵀ·op(A)ᵀ
void gemmRowMajor(Context& c, bool ta, bool tb, int m, int n, int k, const float* a, const float* b, float* out,
                  int batch, float beta = 0.f) {
  const float one = 1.f, zero = beta;
  cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  int lda = ta ? m : k, ldb = tb ? k : n;
  if (batch == 1) {
    CHECK(cublasSgemm(c.blas, opB, opA, n, m, k, &one, b, ldb, a, lda, &zero, out, n));
  } else {
    CHECK(cublasSgemmStridedBatched(c.blas, opB, opA, n, m, k, &one, b, ldb, (long long)k * n, a, lda,
                                    (long long)m * k, &zero, out, n, (long long)m * n, batch));
  }
}

// ---- block-wise training (OmniQuant, Shao et al. 2023): LWC, LET, AdamW -----------------------------
// Each mirrors the CPU backend's heap math (quant/ClippedQuantizer, quant/ScaleShift, Nd4jBackend.adamW) with the
// same float/double choices, so a training step's parameters, gradients and moments never leave the device.

__global__ void reciprocalKernel(const float* a, float* out, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = 1.f / a[i];
}

// out[r, c] = Σ_{j: columns[j] = c} x[r, j], the j in ascending order (the CPU backend's order): the inverse
// index (columns by output column, CSR) is built on the host.
__global__ void scatterAddColumnsKernel(const float* x, int rows, int count, const int* offsets, const int* sources,
                                        int width, float* out) {
  long long n = (long long)rows * width;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long r = i / width;
    int c = (int)(i % width);
    float s = 0.f;
    for (int k = offsets[c]; k < offsets[c + 1]; k++) s += x[r * count + sources[k]];
    out[i] = s;
  }
}

// LET on a weight (eq. 5 and the row scaling): W2 = (W·s)·r, element-wise as the heap does it. Where the columns
// are a multiple of 4, a thread does four adjacent columns and loops over rows (scaleShiftWeight4Kernel): the flat
// grid-stride form pays two 64-bit divisions an element and ran at half the memory rate.
__global__ void scaleShiftWeight4Kernel(const float* w, int rows, int cols, const float* s, const float* r, float* out) {
  int c = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
  if (c >= cols) return;
  float4 sc = s ? *reinterpret_cast<const float4*>(s + c) : make_float4(1.f, 1.f, 1.f, 1.f);
  for (int row = blockIdx.y; row < rows; row += gridDim.y) {
    long long off = (long long)row * cols + c;
    float4 v = *reinterpret_cast<const float4*>(w + off);
    if (s) {
      v.x *= sc.x;
      v.y *= sc.y;
      v.z *= sc.z;
      v.w *= sc.w;
    }
    if (r) {
      float f = r[row];
      v.x *= f;
      v.y *= f;
      v.z *= f;
      v.w *= f;
    }
    *reinterpret_cast<float4*>(out + off) = v;
  }
}

__global__ void scaleShiftWeightKernel(const float* w, int cols, long long n, const float* s, const float* r, float* out) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float v = w[i];
    if (s) v = v * s[i % cols];
    if (r) v = v * r[i / cols];
    out[i] = v;
  }
}

// b1 = b + (float)Σ_c W[row, c]·δ[c] (float64 sum; eq. 5), b2 = (b1 − δr)·r; one block per row.
__global__ void scaleShiftBiasKernel(const float* w, int cols, const float* b, const float* d, const float* r,
                                     const float* dr, float* out) {
  int row = blockIdx.x;
  long long off = (long long)row * cols;
  float b1 = b ? b[row] : 0.f;
  if (d) {
    double acc = 0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) acc += (double)w[off + c] * d[c];
    acc = blockSum(acc);
    b1 += (float)acc;
  }
  if (threadIdx.x == 0) {
    if (r || dr) b1 = (b1 - (dr ? dr[row] : 0.f)) * (r ? r[row] : 1.f);
    out[row] = b1;
  }
}

// Per row of the LET backward: dr = Σ_c dW2·W1 + db2·(b1 − δr) (float64), gb1 = db2·r (as float64 for the dδ
// column sum), dδr = −db2·r. One block per row.
__global__ void scaleShiftRowBackwardKernel(const float* w, int cols, const float* b, const float* s, const float* d,
                                            const float* r, const float* dr, const float* dW, const float* dB, float* gr,
                                            float* gdr, double* gb1) {
  int row = blockIdx.x;
  long long off = (long long)row * cols;
  float f = r ? r[row] : 1.f;
  if (r) {
    double acc = 0, shift = 0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      float wv = w[off + c];
      float w1 = s ? wv * s[c] : wv;
      acc += (double)dW[off + c] * w1;
      if (d) shift += (double)wv * d[c];
    }
    acc = blockSum(acc);
    if (d) shift = blockSum(shift);
    if (threadIdx.x == 0) {
      if (dB) {
        float b1 = d ? (b ? b[row] : 0.f) + (float)shift : b[row];
        acc += (double)dB[row] * (b1 - (dr ? dr[row] : 0.f));
      }
      gr[row] = (float)acc;
    }
  }
  if (threadIdx.x == 0) {
    if (dB) {
      if (gb1) gb1[row] = dB[row] * f;
      if (gdr) gdr[row] = -dB[row] * f;
    } else if (gdr) {
      gdr[row] = 0.f;
    }
  }
}

__device__ float sigmoidOf(float v) { return (float)(1.0 / (1.0 + exp(-(double)v))); }

// LWC's grid of one (row, group) (eq. 2–3): the group's own max/min scaled by σ(γ), σ(β); scale clamped to
// [1e-5, 1e4]; zero point rounded.
struct ClipGrid {
  float mx, mn, scale, zero;
  bool clamped;
};

__device__ ClipGrid gridOfSigmoids(float mx, float mn, float sg, float sb, int maxq) {
  // explicit roundings: nvcc would contract σ(γ)·max − σ(β)·min into an FMA, and a scale one ulp off the CPU's
  // moves rounding boundaries of the whole group
  float h = __fmul_rn(sg, mx), l = __fmul_rn(sb, mn);  // eq. 3
  float raw = __fdiv_rn(__fsub_rn(h, l), (float)maxq);                            // eq. 2
  float scale = fmaxf(1e-5f, fminf(1e4f, raw));
  float zero = rintf(fmaxf(-1e4f, fminf(1e4f, -l / scale)));
  return ClipGrid{mx, mn, scale, zero, raw != scale};
}

__device__ ClipGrid gridOf(float mx, float mn, float gamma, float beta, int maxq) {
  return gridOfSigmoids(mx, mn, sigmoidOf(gamma), sigmoidOf(beta), maxq);
}

// σ(γ) and σ(β) of every (row, group), each in its own thread, before the warp kernels below read them: computed
// inside those kernels by one lane, the float64 exp and division stood in every warp's critical path.
__global__ void sigmoidPairsKernel(const float* gamma, const float* beta, long long n, float* sg, float* sb) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    sg[i] = sigmoidOf(gamma[i]);
    sb[i] = sigmoidOf(beta[i]);
  }
}

__device__ ClipGrid clipGrid(const float* w, long long off, int group, float gamma, float beta, int maxq) {
  float mx = -INFINITY, mn = INFINITY;
  for (int i = threadIdx.x; i < group; i += blockDim.x) {
    mx = fmaxf(mx, w[off + i]);
    mn = fminf(mn, w[off + i]);
  }
  return gridOf(blockMax(mx), blockMin(mn), gamma, beta, maxq);
}

// Ŵ = scale·(clamp(round(W/scale) + zero, 0, 2^N − 1) − zero) (eq. 2); one block per (row, group).
__global__ void fakeQuantizeClippedKernel(const float* w, int cols, int group, int bits, const float* gamma,
                                          const float* beta, float* out) {
  int groups = cols / group;
  long long off = (long long)(blockIdx.x / groups) * cols + (long long)(blockIdx.x % groups) * group;
  int maxq = (1 << bits) - 1;
  ClipGrid q = clipGrid(w, off, group, gamma[blockIdx.x], beta[blockIdx.x], maxq);
  for (int i = threadIdx.x; i < group; i += blockDim.x) {
    int level = (int)fmaxf(0.f, fminf((float)maxq, rintf(w[off + i] / q.scale) + q.zero));
    out[off + i] = q.scale * (level - q.zero);
  }
}

// Backward of the above: round's straight-through estimator inside the clamp range, the scale's gradient through
// h and l into γ, β (σ' = σ(1 − σ)) and into the group's max/min elements, split between ties.
__global__ void fakeQuantizeClippedBackwardKernel(const float* w, int cols, int group, int bits, const float* gamma,
                                                  const float* beta, const float* dOut, float* dW, float* dGamma,
                                                  float* dBeta) {
  int groups = cols / group;
  int k = blockIdx.x;
  long long off = (long long)(k / groups) * cols + (long long)(k % groups) * group;
  int maxq = (1 << bits) - 1;
  ClipGrid q = clipGrid(w, off, group, gamma[k], beta[k], maxq);
  int mxTies = 0, mnTies = 0;
  double dScale = 0;
  for (int i = threadIdx.x; i < group; i += blockDim.x) {
    float v = w[off + i], g = dOut[off + i];
    mxTies += v == q.mx;
    mnTies += v == q.mn;
    float t = v / q.scale;
    float rt = rintf(t);
    float pre = rt + q.zero;
    if (pre >= 0.f && pre <= (float)maxq) {
      dW[off + i] = g;
      dScale += (double)g * (rt - t);
    } else {
      dW[off + i] = 0.f;
      dScale += (double)g * ((pre < 0.f ? 0.f : (float)maxq) - q.zero);
    }
  }
  mxTies = blockSum(mxTies);
  mnTies = blockSum(mnTies);
  dScale = blockSum(dScale);
  if (q.clamped) {
    if (threadIdx.x == 0) {
      dGamma[k] = 0.f;
      dBeta[k] = 0.f;
    }
    return;
  }
  double dh = dScale / maxq, dl = -dScale / maxq;
  float sg = sigmoidOf(gamma[k]), sb = sigmoidOf(beta[k]);
  if (threadIdx.x == 0) {
    dGamma[k] = (float)(dh * q.mx * sg * (1.f - sg));
    dBeta[k] = (float)(dl * q.mn * sb * (1.f - sb));
  }
  double toMax = dh * sg / mxTies, toMin = dl * sb / mnTies;
  for (int i = threadIdx.x; i < group; i += blockDim.x) {
    float v = w[off + i], g = dW[off + i];
    if (v == q.mx) g += (float)toMax;
    if (v == q.mn) g += (float)toMin;
    dW[off + i] = g;
  }
}

// The same two kernels with one warp per (row, group), for groups of at most 32·E elements (g128: E = 4): a lane
// keeps its E elements in registers, so the group is read once and every reduction is a warp shuffle. The kernels
// above give a group a block of threads and reduce through shared memory behind barriers (five reductions and three
// reads of the group in the backward): at 8B with g128, 1.7 M such blocks a step took 8 ms of a 22 ms step.
// Group k of a row-major [rows, cols] weight starts at k·group (groups divide rows): no 64-bit division, which
// cost every warp more instructions than its whole group's arithmetic.
__device__ long long warpGroup(int group, long long total, long long* off) {
  long long k = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
  *off = k * group;
  return k;
}

// A lane's E elements of warp group k (zeros past the group's end) into v, and the group's grid from σ(γ), σ(β)
// (sgs, sbs: sigmoidPairsKernel's), which go into sgOut, sbOut when asked.
template <int E>
__device__ __forceinline__ ClipGrid warpGroupGrid(const float* w, long long off, int group, const float* sgs, const float* sbs,
                                                  long long k, int maxq, float (&v)[E], float* sgOut = nullptr,
                                                  float* sbOut = nullptr) {
  int lane = threadIdx.x & 31;
  float mx = -INFINITY, mn = INFINITY;
#pragma unroll
  for (int j = 0; j < E; j++) {
    int i = lane + 32 * j;
    v[j] = i < group ? w[off + i] : 0.f;
    if (i < group) {
      mx = fmaxf(mx, v[j]);
      mn = fminf(mn, v[j]);
    }
  }
  float sg = sgs[k], sb = sbs[k];
  if (sgOut) *sgOut = sg;
  if (sbOut) *sbOut = sb;
  return gridOfSigmoids(warpReduce(mx, MaxOp()), warpReduce(mn, MinOp()), sg, sb, maxq);
}

template <int E>
__global__ void fakeQuantizeClippedWarpKernel(const float* w, int group, int bits, const float* sg, const float* sb,
                                              long long total, float* out) {
  long long off = 0, k = warpGroup(group, total, &off);
  if (k >= total) return;  // whole warps: k is the warp's
  int lane = threadIdx.x & 31, maxq = (1 << bits) - 1;
  float v[E];
  ClipGrid q = warpGroupGrid<E>(w, off, group, sg, sb, k, maxq, v);
#pragma unroll
  for (int j = 0; j < E; j++) {
    int i = lane + 32 * j;
    if (i >= group) continue;
    int level = (int)fmaxf(0.f, fminf((float)maxq, rintf(v[j] / q.scale) + q.zero));
    out[off + i] = q.scale * (level - q.zero);
  }
}

template <int E>
__global__ void fakeQuantizeClippedBackwardWarpKernel(const float* w, int group, int bits, const float* sgs, const float* sbs,
                                                      const float* dOut, long long total, float* dW, float* dGamma,
                                                      float* dBeta) {
  long long off = 0, k = warpGroup(group, total, &off);
  if (k >= total) return;
  int lane = threadIdx.x & 31, maxq = (1 << bits) - 1;
  float v[E], d[E], sg, sb;
#pragma unroll
  for (int j = 0; j < E; j++) {
    int i = lane + 32 * j;
    d[j] = i < group ? dOut[off + i] : 0.f;
  }
  ClipGrid q = warpGroupGrid<E>(w, off, group, sgs, sbs, k, maxq, v, &sg, &sb);
  int mxTies = 0, mnTies = 0;
  double dScale = 0;
#pragma unroll
  for (int j = 0; j < E; j++) {
    if (lane + 32 * j >= group) continue;
    mxTies += v[j] == q.mx;
    mnTies += v[j] == q.mn;
    float t = v[j] / q.scale;
    float rt = rintf(t);
    float pre = rt + q.zero;
    if (pre >= 0.f && pre <= (float)maxq) {
      dScale += (double)d[j] * (rt - t);  // round's straight-through estimator: d[j] passes as it is
    } else {
      dScale += (double)d[j] * ((pre < 0.f ? 0.f : (float)maxq) - q.zero);
      d[j] = 0.f;
    }
  }
  mxTies = warpReduce(mxTies, SumOp());
  mnTies = warpReduce(mnTies, SumOp());
  dScale = warpReduce(dScale, SumOp());
  double toMax = 0, toMin = 0;
  if (q.clamped) {
    if (lane == 0) {
      dGamma[k] = 0.f;
      dBeta[k] = 0.f;
    }
  } else {
    double dh = dScale / maxq, dl = -dScale / maxq;
    if (lane == 0) {
      dGamma[k] = (float)(dh * q.mx * sg * (1.f - sg));
      dBeta[k] = (float)(dl * q.mn * sb * (1.f - sb));
    }
    toMax = dh * sg / mxTies;
    toMin = dl * sb / mnTies;
  }
#pragma unroll
  for (int j = 0; j < E; j++) {
    int i = lane + 32 * j;
    if (i >= group) continue;
    float g = d[j];
    if (!q.clamped) {
      if (v[j] == q.mx) g += (float)toMax;
      if (v[j] == q.mn) g += (float)toMin;
    }
    dW[off + i] = g;
  }
}

// torch.optim.AdamW in place, in float64 (c1 = 1 − β1^t, c2 = 1 − β2^t from the host).
__global__ void adamWKernel(float* p, const float* g, float* m, float* v, long long n, double lr, double beta1,
                            double beta2, double eps, double wd, double c1, double c2) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    double pi = p[i] * (1 - lr * wd);  // decoupled weight decay
    double mi = beta1 * m[i] + (1 - beta1) * g[i];
    double vi = beta2 * v[i] + (1 - beta2) * (double)g[i] * g[i];
    m[i] = (float)mi;
    v[i] = (float)vi;
    p[i] = (float)(pi - lr * (mi / c1) / (sqrt(vi / c2) + eps));
  }
}

__global__ void clampAwayFromZeroKernel(float* a, long long n, float min) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float x = a[i];
    if (fabsf(x) < min) a[i] = x < 0.f ? -min : min;
  }
}

}  // namespace

// =============================== JNI entry points ===================================================

#define JNI(ret, name) extern "C" JNIEXPORT ret JNICALL Java_io_blockquant_cuda_CudaNative_##name

JNI(jint, deviceCount)(JNIEnv* env, jclass) {
  int n = 0;
  guarded(env, [&] {
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
      cudaGetLastError();
      n = 0;
      return;
    }
    CHECK(e);
  });
  return n;
}

JNI(jstring, deviceName)(JNIEnv* env, jclass, jint device) {
  cudaDeviceProp prop;
  std::string name = "?";
  guarded(env, [&] {
    CHECK(cudaGetDeviceProperties(&prop, device));
    name = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
           std::to_string(prop.multiProcessorCount) + " SMs, " + std::to_string(prop.totalGlobalMem >> 20) + " MiB)";
  });
  return env->NewStringUTF(name.c_str());
}

JNI(void, bind)(JNIEnv* env, jclass, jint device) {
  guarded(env, [&] { bindDevice(device); });
}

JNI(void, releaseThread)(JNIEnv* env, jclass) {
  guarded(env, [&] {
    for (int d = 0; d < kMaxDevices; d++) {
      Context* c = t_contexts[d];
      if (c == nullptr) continue;
      CHECK(cudaSetDevice(d));
      CHECK(cudaStreamSynchronize(c->stream));  // the next user's work is ordered after this one's anyway
      t_contexts[d] = nullptr;
      std::lock_guard<std::mutex> lock(g_idle_mutex);
      g_idle[d].push_back(c);
    }
    t_current = nullptr;
  });
}

JNI(jlong, stream)(JNIEnv* env, jclass) {
  jlong s = 0;
  guarded(env, [&] { s = reinterpret_cast<jlong>(ctx().stream); });
  return s;
}

JNI(void, synchronize)(JNIEnv* env, jclass) {
  guarded(env, [&] { CHECK(cudaStreamSynchronize(ctx().stream)); });
}

JNI(void, setTf32)(JNIEnv* env, jclass, jboolean on) {
  guarded(env, [&] { CHECK(cublasSetMathMode(ctx().blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH)); });
}

JNI(jlongArray, memoryInfo)(JNIEnv* env, jclass) {
  size_t freeBytes = 0, total = 0;
  guarded(env, [&] { ctx(); CHECK(cudaMemGetInfo(&freeBytes, &total)); });
  jlongArray out = env->NewLongArray(2);
  jlong v[2] = {(jlong)freeBytes, (jlong)total};
  env->SetLongArrayRegion(out, 0, 2, v);
  return out;
}

JNI(jlong, alloc)(JNIEnv* env, jclass, jlong bytes) {
  void* p = nullptr;
  guarded(env, [&] { CHECK(cudaMallocAsync(&p, (size_t)bytes, ctx().stream)); });
  return reinterpret_cast<jlong>(p);
}

JNI(void, free)(JNIEnv* env, jclass, jint device, jlong ptr, jlong stream) {
  guarded(env, [&] {
    int current = -1;
    CHECK(cudaGetDevice(&current));
    if (current != device) CHECK(cudaSetDevice(device));
    // ordered after every kernel queued on the allocating stream; legal from any thread (the cleaner's)
    CHECK(cudaFreeAsync(reinterpret_cast<void*>(ptr), reinterpret_cast<cudaStream_t>(stream)));
    if (current != device && current >= 0) CHECK(cudaSetDevice(current));
  });
}

JNI(void, upload)(JNIEnv* env, jclass, jlong dst, jfloatArray src, jint offset, jint count) {
  guarded(env, [&] {
    Context& c = ctx();
    void* host = env->GetPrimitiveArrayCritical(src, nullptr);
    // from pageable memory the copy has left the Java array once cudaMemcpyAsync returns
    cudaError_t e = cudaMemcpyAsync(F(dst), static_cast<float*>(host) + offset, sizeof(float) * count,
                                    cudaMemcpyHostToDevice, c.stream);
    env->ReleasePrimitiveArrayCritical(src, host, JNI_ABORT);
    CHECK(e);
  });
}

JNI(void, download)(JNIEnv* env, jclass, jlong src, jfloatArray dst, jint offset, jint count) {
  guarded(env, [&] {
    Context& c = ctx();
    // straight into the Java array (one pass over host memory, not a staging copy and a second copy)
    void* host = env->GetPrimitiveArrayCritical(dst, nullptr);
    cudaError_t e = cudaMemcpyAsync(static_cast<float*>(host) + offset, F(src), sizeof(float) * count,
                                    cudaMemcpyDeviceToHost, c.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c.stream);
    env->ReleasePrimitiveArrayCritical(dst, host, 0);
    CHECK(e);
  });
}

JNI(void, downloadBytes)(JNIEnv* env, jclass, jlong src, jobject dst, jlong offset, jlong bytes) {
  guarded(env, [&] {
    Context& c = ctx();
    char* host = static_cast<char*>(env->GetDirectBufferAddress(dst));
    if (host == nullptr) throw Failure{"downloadBytes: not a direct buffer"};
    // this thread's stream: the caller made sure the tensor's producing work has finished
    CHECK(cudaMemcpyAsync(host + offset, reinterpret_cast<const void*>(src), (size_t)bytes, cudaMemcpyDeviceToHost, c.stream));
    CHECK(cudaStreamSynchronize(c.stream));
  });
}

JNI(void, fillZero)(JNIEnv* env, jclass, jlong ptr, jlong bytes) {
  guarded(env, [&] { CHECK(cudaMemsetAsync(reinterpret_cast<void*>(ptr), 0, (size_t)bytes, ctx().stream)); });
}

JNI(void, copy)(JNIEnv* env, jclass, jlong dst, jlong src, jlong bytes) {
  guarded(env, [&] {
    if (bytes > 0)
      CHECK(cudaMemcpyAsync(reinterpret_cast<void*>(dst), reinterpret_cast<void*>(src), (size_t)bytes,
                            cudaMemcpyDeviceToDevice, ctx().stream));
  });
}

JNI(void, copy2d)(JNIEnv* env, jclass, jlong dst, jlong dstPitch, jlong src, jlong srcPitch, jlong width, jlong height) {
  guarded(env, [&] {
    if (width > 0 && height > 0)
      CHECK(cudaMemcpy2DAsync(reinterpret_cast<void*>(dst), dstPitch * sizeof(float), reinterpret_cast<void*>(src),
                              srcPitch * sizeof(float), width * sizeof(float), height, cudaMemcpyDeviceToDevice,
                              ctx().stream));
  });
}

JNI(void, transpose)(JNIEnv* env, jclass, jlong src, jlong dst, jint rows, jint cols) {
  guarded(env, [&] { transposeOn(F(src), F(dst), rows, cols, ctx().stream); });
}

JNI(void, gatherRows)(JNIEnv* env, jclass, jlong table, jlong, jint width, jintArray rows, jlong out) {
  guarded(env, [&] {
    Context& c = ctx();
    std::vector<jint> host = intsOf(env, rows);
    jsize n = (jsize)host.size();
    Scratch d = uploadArray(host.data(), n, c.stream);
    gatherRowsKernel<<<gridFor((long long)n * width), 256, 0, c.stream>>>(F(table), width, d.as<int>(), n, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, selectColumns)(JNIEnv* env, jclass, jlong in, jint rows, jint cols, jintArray columns, jlong out) {
  guarded(env, [&] {
    Context& c = ctx();
    std::vector<jint> host = intsOf(env, columns);
    jsize n = (jsize)host.size();
    Scratch d = uploadArray(host.data(), n, c.stream);
    selectColumnsKernel<<<gridFor((long long)rows * n), 256, 0, c.stream>>>(F(in), rows, cols, d.as<int>(), n, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, permute0213)(JNIEnv* env, jclass, jlong in, jint a, jint b, jint c, jint d, jlong out) {
  guarded(env, [&] {
    permute0213Kernel<<<rowsGrid((long long)a * b * c), rowThreadsFor(d), 0, ctx().stream>>>(F(in), a, b, c, d, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, repeatHeads)(JNIEnv* env, jclass, jlong in, jlong n, jint groups, jlong per, jboolean sum, jlong out) {
  guarded(env, [&] {
    cudaStream_t s = ctx().stream;
    unsigned x = std::min(gridFor(per), 65535u * 16 / 8);  // about 2^21 threads a slab; y walks the slabs
    if (sum) sumRepeatedKernel<<<dim3(x, (unsigned)std::min((long long)n, 65535LL)), 256, 0, s>>>(F(in), n, groups, per, F(out));
    else repeatKernel<<<dim3(x, (unsigned)std::min((long long)n * groups, 65535LL)), 256, 0, s>>>(F(in), n, groups, per, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, gemm)(JNIEnv* env, jclass, jboolean ta, jboolean tb, jint m, jint n, jint k, jlong a, jlong b, jlong c) {
  guarded(env, [&] { gemmRowMajor(ctx(), ta, tb, m, n, k, F(a), F(b), F(c), 1); });
}

// C += op(A)·op(B): a running sum kept on the device (GPTQ's Σ xᵀx over calibration batches)
JNI(void, gemmAccumulate)(JNIEnv* env, jclass, jboolean ta, jboolean tb, jint m, jint n, jint k, jlong a, jlong b, jlong c) {
  guarded(env, [&] { gemmRowMajor(ctx(), ta, tb, m, n, k, F(a), F(b), F(c), 1, 1.f); });
}

JNI(void, gemmBatched)(JNIEnv* env, jclass, jboolean ta, jboolean tb, jint m, jint n, jint k, jint batch, jlong a, jlong b,
                       jlong c) {
  guarded(env, [&] { gemmRowMajor(ctx(), ta, tb, m, n, k, F(a), F(b), F(c), batch); });
}

JNI(void, binary)(JNIEnv* env, jclass, jint op, jlong a, jlong b, jlong out, jlong n) {
  guarded(env, [&] {
    binaryKernel<<<gridFor(n), 256, 0, ctx().stream>>>(op, F(a), F(b), F(out), n);
    CHECK_LAUNCH();
  });
}

JNI(void, scale)(JNIEnv* env, jclass, jlong a, jfloat f, jlong out, jlong n) {
  guarded(env, [&] {
    scaleKernel<<<gridFor(n), 256, 0, ctx().stream>>>(F(a), f, F(out), n);
    CHECK_LAUNCH();
  });
}

JNI(void, rowVector)(JNIEnv* env, jclass, jint op, jlong a, jlong row, jlong out, jlong rows, jint cols) {
  guarded(env, [&] {
    rowVectorKernel<<<gridFor(rows * cols), 256, 0, ctx().stream>>>(op, F(a), F(row), F(out), rows * cols, cols);
    CHECK_LAUNCH();
  });
}

JNI(void, activate)(JNIEnv* env, jclass, jint act, jlong x, jlong out, jlong n) {
  guarded(env, [&] {
    activateKernel<<<gridFor(n), 256, 0, ctx().stream>>>(act, F(x), F(out), n);
    CHECK_LAUNCH();
  });
}

JNI(void, gatedActivation)(JNIEnv* env, jclass, jint act, jlong g, jlong u, jlong out, jlong n) {
  guarded(env, [&] {
    gatedActivationKernel<<<gridFor(n), 256, 0, ctx().stream>>>(act, F(g), F(u), F(out), n);
    CHECK_LAUNCH();
  });
}

JNI(void, gatedActivationBackward)(JNIEnv* env, jclass, jint act, jlong g, jlong u, jlong dy, jlong dg, jlong du, jlong n) {
  guarded(env, [&] {
    gatedActivationBackwardKernel<<<gridFor(n), 256, 0, ctx().stream>>>(act, F(g), F(u), F(dy), F(dg), F(du), n);
    CHECK_LAUNCH();
  });
}

JNI(void, activationBackward)(JNIEnv* env, jclass, jint act, jlong x, jlong dy, jlong out, jlong n) {
  guarded(env, [&] {
    activationBackwardKernel<<<gridFor(n), 256, 0, ctx().stream>>>(act, F(x), F(dy), F(out), n);
    CHECK_LAUNCH();
  });
}

JNI(jdouble, sum)(JNIEnv* env, jclass, jlong a, jlong n, jboolean squares) {
  double result = 0;
  guarded(env, [&] {
    Context& c = ctx();
    Scratch acc(sizeof(double), c.stream);
    CHECK(cudaMemsetAsync(acc.ptr, 0, sizeof(double), c.stream));
    unsigned blocks = gridFor(n);
    if (blocks > 1024) blocks = 1024;
    sumKernel<<<blocks, 256, 0, c.stream>>>(F(a), n, squares, acc.as<double>());
    CHECK_LAUNCH();
    CHECK(cudaMemcpyAsync(&result, acc.ptr, sizeof(double), cudaMemcpyDeviceToHost, c.stream));
    CHECK(cudaStreamSynchronize(c.stream));
  });
  return result;
}

JNI(void, rowLogSumExp)(JNIEnv* env, jclass, jlong a, jint rows, jint cols, jdoubleArray out) {
  guarded(env, [&] {
    Context& c = ctx();
    Scratch d(sizeof(double) * rows, c.stream);
    rowLogSumExpKernel<<<rows, rowThreads(cols), 0, c.stream>>>(F(a), cols, d.as<double>());
    CHECK_LAUNCH();
    std::vector<double> host(rows);
    CHECK(cudaMemcpyAsync(host.data(), d.ptr, sizeof(double) * rows, cudaMemcpyDeviceToHost, c.stream));
    CHECK(cudaStreamSynchronize(c.stream));
    env->SetDoubleArrayRegion(out, 0, rows, host.data());
  });
}

JNI(void, scaleAddDiagonal)(JNIEnv* env, jclass, jlong a, jint n, jfloat f, jfloatArray d) {
  guarded(env, [&] {
    Context& c = ctx();
    std::vector<jfloat> host(n);
    env->GetFloatArrayRegion(d, 0, n, host.data());
    Scratch dd = uploadArray(host.data(), n, c.stream);
    scaleAddDiagonalKernel<<<gridFor((long long)n * n), 256, 0, c.stream>>>(F(a), n, f, dd.as<float>());
    CHECK_LAUNCH();
    CHECK(cudaStreamSynchronize(c.stream));  // the diagonal's scratch goes when this returns
  });
}

JNI(void, pickPerRow)(JNIEnv* env, jclass, jlong a, jint rows, jint cols, jintArray columns, jfloatArray out) {
  guarded(env, [&] {
    Context& c = ctx();
    std::vector<jint> host(rows);
    env->GetIntArrayRegion(columns, 0, rows, host.data());
    Scratch d = uploadArray(host.data(), rows, c.stream);
    Scratch picked(sizeof(float) * rows, c.stream);
    pickPerRowKernel<<<gridFor(rows), 256, 0, c.stream>>>(F(a), rows, cols, d.as<int>(), picked.as<float>());
    CHECK_LAUNCH();
    std::vector<float> result(rows);
    CHECK(cudaMemcpyAsync(result.data(), picked.ptr, sizeof(float) * rows, cudaMemcpyDeviceToHost, c.stream));
    CHECK(cudaStreamSynchronize(c.stream));
    env->SetFloatArrayRegion(out, 0, rows, result.data());
  });
}

JNI(void, rowAbsMax)(JNIEnv* env, jclass, jlong a, jint rows, jint cols, jlong out) {
  guarded(env, [&] {
    rowAbsMaxKernel<<<rows, rowThreads(cols), 0, ctx().stream>>>(F(a), cols, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, windowColumnRanges)(JNIEnv* env, jclass, jlong a, jint windows, jint seq, jint cols, jlong out) {
  guarded(env, [&] {
    windowColumnRangesKernel<<<dim3((cols + 255) / 256, windows), 256, 0, ctx().stream>>>(F(a), seq, cols, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, columnSums)(JNIEnv* env, jclass, jlong a, jint rows, jint cols, jlong out) {
  guarded(env, [&] { columnReduce(F(a), nullptr, nullptr, nullptr, rows, cols, F(out), ctx().stream); });
}

JNI(void, rmsNorm)(JNIEnv* env, jclass, jlong x, jlong w, jfloat eps, jint rows, jint cols, jlong out) {
  guarded(env, [&] {
    rmsNormKernel<<<rows, rowThreads(cols), 0, ctx().stream>>>(F(x), F(w), eps, cols, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, layerNorm)(JNIEnv* env, jclass, jlong x, jlong w, jlong b, jfloat eps, jint rows, jint cols, jlong out) {
  guarded(env, [&] {
    layerNormKernel<<<rows, rowThreads(cols), 0, ctx().stream>>>(F(x), F(w), b ? F(b) : nullptr, eps, cols, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, rmsNormBackward)(JNIEnv* env, jclass, jlong x, jlong w, jfloat eps, jlong dy, jint rows, jint cols, jlong dx,
                           jlong dw) {
  guarded(env, [&] {
    Context& c = ctx();
    Scratch inv(sizeof(double) * rows, c.stream);
    rmsNormBackwardKernel<<<rows, rowThreads(cols), 0, c.stream>>>(F(x), F(w), eps, F(dy), cols, F(dx), inv.as<double>());
    CHECK_LAUNCH();
    columnReduce(F(dy), F(x), nullptr, inv.as<double>(), rows, cols, F(dw), c.stream);
  });
}

JNI(void, layerNormBackward)(JNIEnv* env, jclass, jlong x, jlong w, jfloat eps, jlong dy, jint rows, jint cols, jlong dx,
                             jlong dw, jlong db) {
  guarded(env, [&] {
    Context& c = ctx();
    Scratch mean(sizeof(double) * rows, c.stream), inv(sizeof(double) * rows, c.stream);
    layerNormBackwardKernel<<<rows, rowThreads(cols), 0, c.stream>>>(F(x), F(w), eps, F(dy), cols, F(dx),
                                                                     mean.as<double>(), inv.as<double>());
    CHECK_LAUNCH();
    columnReduce(F(dy), F(x), mean.as<double>(), inv.as<double>(), rows, cols, F(dw), c.stream);
    columnReduce(F(dy), nullptr, nullptr, nullptr, rows, cols, F(db), c.stream);
  });
}

JNI(void, rope)(JNIEnv* env, jclass, jlong x, jint n, jint seq, jint d, jfloatArray invFreq, jfloat sign, jlong out) {
  guarded(env, [&] {
    Context& c = ctx();
    jsize half = env->GetArrayLength(invFreq);
    std::vector<float> host(half);
    env->GetFloatArrayRegion(invFreq, 0, half, host.data());
    Scratch freq = uploadArray(host.data(), half, c.stream);
    Scratch table((size_t)seq * half * 2 * sizeof(float), c.stream);
    ropeTableKernel<<<gridFor((long long)seq * half), 256, 0, c.stream>>>(seq, freq.as<float>(), half, sign, table.as<float>());
    long long rows = (long long)n * seq;
    ropeKernel<<<rowsGrid(rows), rowThreadsFor(d), 0, c.stream>>>(F(x), rows, seq, d, table.as<float>(), half, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, causalSoftmax)(JNIEnv* env, jclass, jlong scores, jint n, jint seq, jfloat scale, jlong out) {
  guarded(env, [&] {
    unsigned rows = (unsigned)((long long)n * seq);
    int threads = rowThreads(seq), e = (seq + threads - 1) / threads;
    cudaStream_t s = ctx().stream;
    if (e <= 2) causalSoftmaxRowKernel<2><<<rows, threads, 0, s>>>(F(scores), seq, scale, F(out));
    else if (e <= 4) causalSoftmaxRowKernel<4><<<rows, threads, 0, s>>>(F(scores), seq, scale, F(out));
    else if (e <= 8) causalSoftmaxRowKernel<8><<<rows, threads, 0, s>>>(F(scores), seq, scale, F(out));
    else if (e <= 16) causalSoftmaxRowKernel<16><<<rows, threads, 0, s>>>(F(scores), seq, scale, F(out));
    else causalSoftmaxKernel<<<rows, threads, 0, s>>>(F(scores), seq, scale, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, causalSoftmaxBackward)(JNIEnv* env, jclass, jlong p, jlong dp, jlong rows, jint seq, jfloat scale, jlong out) {
  guarded(env, [&] {
    int threads = rowThreads(seq), e = (seq + threads - 1) / threads;
    cudaStream_t s = ctx().stream;
    unsigned r = (unsigned)rows;
    if (e <= 2) causalSoftmaxBackwardRowKernel<2><<<r, threads, 0, s>>>(F(p), F(dp), seq, scale, F(out));
    else if (e <= 4) causalSoftmaxBackwardRowKernel<4><<<r, threads, 0, s>>>(F(p), F(dp), seq, scale, F(out));
    else if (e <= 8) causalSoftmaxBackwardRowKernel<8><<<r, threads, 0, s>>>(F(p), F(dp), seq, scale, F(out));
    else if (e <= 16) causalSoftmaxBackwardRowKernel<16><<<r, threads, 0, s>>>(F(p), F(dp), seq, scale, F(out));
    else causalSoftmaxBackwardKernel<<<r, threads, 0, s>>>(F(p), F(dp), seq, scale, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, fakeQuantizeWeight)(JNIEnv* env, jclass, jlong w, jint rows, jint cols, jint group, jint bits, jboolean symmetric,
                              jlong out) {
  guarded(env, [&] {
    unsigned blocks = (unsigned)((long long)rows * (cols / group));
    fakeQuantizeWeightKernel<<<blocks, rowThreads(group), 0, ctx().stream>>>(F(w), cols, group, bits, symmetric, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, fakeQuantizeTokens)(JNIEnv* env, jclass, jlong x, jint rows, jint cols, jint bits, jlong out) {
  guarded(env, [&] {
    fakeQuantizeTokensKernel<<<rows, rowThreads(cols), 0, ctx().stream>>>(F(x), cols, bits, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, fakeQuantizeTokensAsym)(JNIEnv* env, jclass, jlong x, jint rows, jint cols, jint bits, jlong out) {
  guarded(env, [&] {
    fakeQuantizeTokensAsymKernel<<<rows, rowThreads(cols), 0, ctx().stream>>>(F(x), cols, bits, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, fakeQuantizeTokensFp)(JNIEnv* env, jclass, jlong x, jint rows, jint cols, jint M, jint bias, jint maxCode,
                                jfloat maxValue, jlong out) {
  guarded(env, [&] {
    fakeQuantizeTokensFpKernel<<<rows, rowThreads(cols), 0, ctx().stream>>>(F(x), cols, M, bias, maxCode, maxValue, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, fakeQuantizeTokensBackward)(JNIEnv* env, jclass, jlong x, jlong dy, jint rows, jint cols, jint rule, jint bits, jint M,
                                      jint bias, jint maxCode, jfloat maxValue, jlong dx) {
  guarded(env, [&] {
    fakeQuantizeTokensBackwardKernel<<<rows, rowThreads(cols), 0, ctx().stream>>>(F(x), F(dy), cols, rule, bits, M, bias, maxCode,
                                                                                  maxValue, F(dx));
    CHECK_LAUNCH();
  });
}

JNI(jint, cholesky)(JNIEnv* env, jclass, jlong a, jint n, jlong out) {
  int info = 0;
  guarded(env, [&] {
    Context& c = ctx();
    CHECK(cudaMemcpyAsync(F(out), F(a), sizeof(float) * n * n, cudaMemcpyDeviceToDevice, c.stream));
    // a symmetric row-major matrix is its own column-major transpose; the column-major upper factor U
    // (A = UᵀU) read row-major is the lower factor L = Uᵀ
    int lwork = 0;
    CHECK(cusolverDnSpotrf_bufferSize(c.solver, CUBLAS_FILL_MODE_UPPER, n, F(out), n, &lwork));
    Scratch work(sizeof(float) * (lwork > 0 ? lwork : 1), c.stream);
    Scratch devInfo(sizeof(int), c.stream);
    CHECK(cusolverDnSpotrf(c.solver, CUBLAS_FILL_MODE_UPPER, n, F(out), n, work.as<float>(), lwork, devInfo.as<int>()));
    lowerTriangleKernel<<<gridFor((long long)n * n), 256, 0, c.stream>>>(F(out), n);
    CHECK_LAUNCH();
    CHECK(cudaMemcpyAsync(&info, devInfo.ptr, sizeof(int), cudaMemcpyDeviceToHost, c.stream));
    CHECK(cudaStreamSynchronize(c.stream));
  });
  return info;
}

JNI(void, solveTriangular)(JNIEnv* env, jclass, jlong t, jlong b, jint n, jint m, jboolean lower, jlong out) {
  guarded(env, [&] {
    Context& c = ctx();
    long long tn = (long long)n * n, bn = (long long)n * m;
    Scratch td(sizeof(double) * tn, c.stream), bd(sizeof(double) * bn, c.stream);
    floatToDoubleKernel<<<gridFor(tn), 256, 0, c.stream>>>(F(t), td.as<double>(), tn);
    floatToDoubleKernel<<<gridFor(bn), 256, 0, c.stream>>>(F(b), bd.as<double>(), bn);
    CHECK_LAUNCH();
    // row-major T·X = B is, column-major, Xᵀ·Tᵀ = Bᵀ: a right-side solve with Tᵀ (upper when T is lower)
    const double one = 1.0;
#if defined(CUBLAS_VER_MAJOR) && CUBLAS_VER_MAJOR >= 12
    // the 64-bit interface: a Llama-2-70B down_proj's factor is 28672² doubles (6.6 GB), past 2³¹ bytes
    CHECK(cublasDtrsm_64(c.blas, CUBLAS_SIDE_RIGHT, lower ? CUBLAS_FILL_MODE_UPPER : CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                         CUBLAS_DIAG_NON_UNIT, (int64_t)m, (int64_t)n, &one, td.as<double>(), (int64_t)n, bd.as<double>(),
                         (int64_t)m));
#else
    CHECK(cublasDtrsm(c.blas, CUBLAS_SIDE_RIGHT, lower ? CUBLAS_FILL_MODE_UPPER : CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                      CUBLAS_DIAG_NON_UNIT, m, n, &one, td.as<double>(), n, bd.as<double>(), m));
#endif
    doubleToFloatKernel<<<gridFor(bn), 256, 0, c.stream>>>(bd.as<double>(), F(out), bn);
    CHECK_LAUNCH();
  });
}

JNI(jint, svd)(JNIEnv* env, jclass, jlong a, jint m, jint n, jlong u, jlong s, jlong v) {
  int info = 0;
  guarded(env, [&] {
    Context& c = ctx();
    // gesvd needs a column-major matrix with rows ≥ cols. Row-major A [m, n] read column-major is Aᵀ [n × m]:
    // use it as is when n ≥ m (then A = V_M·S·U_Mᵀ), else transpose it into column-major A [m × n].
    bool wide = n >= m;
    int R = wide ? n : m, C = wide ? m : n;
    Scratch work(sizeof(float) * (long long)m * n, c.stream);
    if (wide) CHECK(cudaMemcpyAsync(work.ptr, F(a), sizeof(float) * (long long)m * n, cudaMemcpyDeviceToDevice, c.stream));
    else transposeOn(F(a), work.as<float>(), m, n, c.stream);
    Scratch uM(sizeof(float) * (long long)R * C, c.stream), vtM(sizeof(float) * (long long)C * C, c.stream);
    int lwork = 0;
    CHECK(cusolverDnSgesvd_bufferSize(c.solver, R, C, &lwork));
    Scratch buf(sizeof(float) * (lwork > 0 ? lwork : 1), c.stream), rwork(sizeof(float) * C, c.stream),
        devInfo(sizeof(int), c.stream);
    signed char job = 'S';
    CHECK(cusolverDnSgesvd(c.solver, job, job, R, C, work.as<float>(), R, F(s), uM.as<float>(), R, vtM.as<float>(), C,
                           buf.as<float>(), lwork, rwork.as<float>(), devInfo.as<int>()));
    // column-major U_M [R × C] read row-major is U_Mᵀ [C, R]: transpose gives U_M row-major [R, C];
    // column-major V_Mᵀ [C × C] read row-major is V_M.
    float* fromU = wide ? F(v) : F(u);
    float* fromVt = wide ? F(u) : F(v);
    transposeOn(uM.as<float>(), fromU, C, R, c.stream);
    CHECK(cudaMemcpyAsync(fromVt, vtM.ptr, sizeof(float) * (long long)C * C, cudaMemcpyDeviceToDevice, c.stream));
    CHECK(cudaMemcpyAsync(&info, devInfo.ptr, sizeof(int), cudaMemcpyDeviceToHost, c.stream));
    CHECK(cudaStreamSynchronize(c.stream));
  });
  return info;
}

// ---- GPTQ's column loop on the device (Alg. 1 of Frantar et al. with lazy batch updates) -----------------------
//
// One warp per row of W [rows, cols] (row-major) for the columns [i1, i2) of one lazy block (at most 128): lane l
// holds columns i1 + l + 32k, k = 0..3, in registers. Rows are independent in Alg. 1 (a column's error only moves
// later columns of the same row), so a row's whole block runs without leaving its warp: per column, the lane that
// holds it broadcasts the value, every lane rounds it onto the group's integer grid, and each lane updates its later
// columns by err · U[c, j]. Arithmetic as in GptqQuantizer/IntQuantizer (no fused multiply-add, rint half to even),
// so a row computes what the Java loop computes for it; only the loss is summed in another order.
namespace {

__device__ __forceinline__ float pickLane(const float v[4], int i) {
  float mine = i < 32 ? v[0] : i < 64 ? v[1] : i < 96 ? v[2] : v[3];
  return __shfl_sync(0xffffffffu, mine, i & 31);
}

__global__ void gptqIntBlockKernel(float* W, int rows, int cols, const float* U, int i1, int i2, int group, int maxq,
                                   bool sym, int* levels, float* scales, float* zeros, int groups, float* err,
                                   double* loss) {
  int r = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x & 31;
  if (r >= rows) return;  // a whole warp: blockDim is a multiple of 32
  float* row = W + (long long)r * cols;
  float v[4], start[4];
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int c = i1 + lane + 32 * k;
    v[k] = c < i2 ? row[c] : 0.f;
    start[k] = v[k];
  }
  float scale = 1.f, zero = 0.f;
  double acc = 0;
  for (int c = i1; c < i2; c++) {
    int i = c - i1;
    if (c % group == 0) {
      // the group's range: its columns in this block as they were when the block started (the reference reads W,
      // which changes only at block ends), later columns as they are now
      float mn = 0.f, mx = 0.f;
      int end = min(c + group, cols);
#pragma unroll
      for (int k = 0; k < 4; k++) {
        int col = i1 + lane + 32 * k;
        if (col >= c && col < end && col < i2) { mn = fminf(mn, start[k]); mx = fmaxf(mx, start[k]); }
      }
      for (int col = i2 + lane; col < end; col += 32) { float x = row[col]; mn = fminf(mn, x); mx = fmaxf(mx, x); }
      for (int o = 16; o > 0; o >>= 1) {
        mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, o));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      }
      if (sym) { float a = fmaxf(fabsf(mn), mx); mn = -a; mx = a; }
      if (mn == 0.f && mx == 0.f) { mn = -1.f; mx = 1.f; }
      scale = __fdiv_rn(__fsub_rn(mx, mn), (float)maxq);
      zero = sym ? (maxq + 1) / 2.f : rintf(__fdiv_rn(-mn, scale));
      if (lane == 0) { scales[(long long)r * groups + c / group] = scale; zeros[(long long)r * groups + c / group] = zero; }
    }
    float w = pickLane(v, i);
    float lv = __fadd_rn(rintf(__fdiv_rn(w, scale)), zero);
    int level = (int)fmaxf(0.f, fminf((float)maxq, lv));
    float q = __fmul_rn(scale, __fsub_rn((float)level, zero));
    float d = U[(long long)c * cols + c];
    float e = __fdiv_rn(__fsub_rn(w, q), d);
    if (lane == 0) {
      double dq = (double)(w - q);
      acc += dq * dq / ((double)d * d) / 2;
      levels[(long long)r * cols + c] = level;
      err[(long long)r * 128 + i] = e;
    }
    const float* u = U + (long long)c * cols;
#pragma unroll
    for (int k = 0; k < 4; k++) {
      int col = i1 + lane + 32 * k;
      if (col == c) v[k] = q;
      else if (col > c && col < i2) v[k] = __fsub_rn(v[k], __fmul_rn(e, u[col]));
    }
  }
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int c = i1 + lane + 32 * k;
    if (c < i2) row[c] = v[k];
  }
  if (lane == 0) atomicAdd(loss, acc);
}

}  // namespace

namespace {

// GPTQ's column loop on device W [rows, cols] (updated in place: quantized columns hold their dequantized values) and
// U (the upper factor of H⁻¹, [cols, cols]); leaves levels [rows, cols], scales and zeros [rows, groups] in the host
// arrays and returns the loss. Per lazy block: the kernel, then W[:, i2:] -= Err · U[i1:i2, i2:] as one cuBLAS product
// straight on W's and U's sub-matrices.
double gptqIntColumns(JNIEnv* env, Context& c, float* dW, int rows, int cols, const float* dU, int blockSize, int group,
                      int bits, bool sym, jintArray levels, jfloatArray scales, jfloatArray zeros) {
  if (blockSize < 1 || blockSize > 128) throw Failure{"gptqInt: block size must be 1..128"};
  long long n = (long long)rows * cols;
  int groups = cols / group;
  Scratch dLevels(sizeof(int) * n, c.stream), dScales(sizeof(float) * (long long)rows * groups, c.stream),
      dZeros(sizeof(float) * (long long)rows * groups, c.stream), dErr(sizeof(float) * (long long)rows * 128, c.stream),
      dLoss(sizeof(double), c.stream);
  CHECK(cudaMemsetAsync(dLoss.ptr, 0, sizeof(double), c.stream));
  // the lazy updates in exact float32, as the reference's (TF32, if this thread asked for it, is for forward passes)
  cublasMath_t mode;
  CHECK(cublasGetMathMode(c.blas, &mode));
  CHECK(cublasSetMathMode(c.blas, CUBLAS_DEFAULT_MATH));
  int maxq = (1 << bits) - 1;
  const float minusOne = -1.f, one = 1.f;
  unsigned blocks = (unsigned)(((long long)rows * 32 + 255) / 256);
  for (int i1 = 0; i1 < cols; i1 += blockSize) {
    int i2 = i1 + blockSize < cols ? i1 + blockSize : cols;
    gptqIntBlockKernel<<<blocks, 256, 0, c.stream>>>(dW, rows, cols, dU, i1, i2, group, maxq, sym, dLevels.as<int>(),
                                                     dScales.as<float>(), dZeros.as<float>(), groups, dErr.as<float>(),
                                                     dLoss.as<double>());
    CHECK_LAUNCH();
    int rest = cols - i2, count = i2 - i1;
    if (rest > 0) {
      // row-major W[:, i2:] (ld cols) -= Err [rows, count] (ld 128) · U[i1:i2, i2:] (ld cols); column-major that is
      // W' (rest × rows) -= U' (rest × count) · Err' (count × rows)
      CHECK(cublasSgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, rest, rows, count, &minusOne, dU + (long long)i1 * cols + i2, cols,
                        dErr.as<float>(), 128, &one, dW + i2, cols));
    }
  }
  CHECK(cublasSetMathMode(c.blas, mode));
  auto down = [&](void* src, jarray a, size_t bytes) {
    void* host = env->GetPrimitiveArrayCritical(a, nullptr);
    cudaError_t e = cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, c.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c.stream);
    env->ReleasePrimitiveArrayCritical(a, host, 0);
    CHECK(e);
  };
  down(dLevels.ptr, levels, sizeof(int) * n);
  down(dScales.ptr, scales, sizeof(float) * (long long)rows * groups);
  down(dZeros.ptr, zeros, sizeof(float) * (long long)rows * groups);
  double loss = 0;
  CHECK(cudaMemcpyAsync(&loss, dLoss.ptr, sizeof(double), cudaMemcpyDeviceToHost, c.stream));
  CHECK(cudaStreamSynchronize(c.stream));
  return loss;
}

}  // namespace

// The column loop on W and U from the Java heap (see gptqIntColumns).
JNI(jdouble, gptqInt)(JNIEnv* env, jclass, jfloatArray w, jint rows, jint cols, jfloatArray u, jint blockSize, jint group,
                      jint bits, jboolean sym, jintArray levels, jfloatArray scales, jfloatArray zeros) {
  double loss = 0;
  guarded(env, [&] {
    Context& c = ctx();
    long long n = (long long)rows * cols;
    Scratch dW(sizeof(float) * n, c.stream), dU(sizeof(float) * (long long)cols * cols, c.stream);
    auto up = [&](jfloatArray a, void* dst, long long count) {
      void* host = env->GetPrimitiveArrayCritical(a, nullptr);
      cudaError_t e = cudaMemcpyAsync(dst, host, sizeof(float) * count, cudaMemcpyHostToDevice, c.stream);
      env->ReleasePrimitiveArrayCritical(a, host, JNI_ABORT);
      CHECK(e);
    };
    up(w, dW.ptr, n);
    up(u, dU.ptr, (long long)cols * cols);
    loss = gptqIntColumns(env, c, dW.as<float>(), rows, cols, dU.as<float>(), blockSize, group, bits, sym == JNI_TRUE,
                          levels, scales, zeros);
  });
  return loss;
}

// The column loop on W and U already on the device (W updated in place).
JNI(jdouble, gptqIntDevice)(JNIEnv* env, jclass, jlong w, jint rows, jint cols, jlong u, jint blockSize, jint group,
                            jint bits, jboolean sym, jintArray levels, jfloatArray scales, jfloatArray zeros) {
  double loss = 0;
  guarded(env, [&] {
    loss = gptqIntColumns(env, ctx(), F(w), rows, cols, F(u), blockSize, group, bits, sym == JNI_TRUE, levels, scales,
                          zeros);
  });
  return loss;
}

// ---- block-wise training ----------------------------------------------------------------------------

inline float* FN(jlong p) { return p ? F(p) : nullptr; }

JNI(void, reciprocal)(JNIEnv* env, jclass, jlong a, jlong out, jlong n) {
  guarded(env, [&] {
    reciprocalKernel<<<gridFor(n), 256, 0, ctx().stream>>>(F(a), F(out), n);
    CHECK_LAUNCH();
  });
}

JNI(void, scatterAddColumns)(JNIEnv* env, jclass, jlong x, jint rows, jintArray columns, jint width, jlong out) {
  guarded(env, [&] {
    Context& c = ctx();
    std::vector<jint> host = intsOf(env, columns);
    jsize count = (jsize)host.size();
    std::vector<int> offsets(width + 1, 0), sources(count);
    for (jint col : host) {
      if (col < 0 || col >= width) throw Failure{"scatterAddColumns: column out of range"};
      offsets[col + 1]++;
    }
    for (int i = 0; i < width; i++) offsets[i + 1] += offsets[i];
    std::vector<int> next(offsets.begin(), offsets.end() - 1);
    for (int j = 0; j < count; j++) sources[next[host[j]]++] = j;  // ascending j within each column
    Scratch dOff = uploadArray(offsets.data(), offsets.size(), c.stream);
    Scratch dSrc = uploadArray(sources.data(), sources.size(), c.stream);
    scatterAddColumnsKernel<<<gridFor((long long)rows * width), 256, 0, c.stream>>>(F(x), rows, count, dOff.as<int>(),
                                                                                   dSrc.as<int>(), width, F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, scaleShiftLinear)(JNIEnv* env, jclass, jlong w, jint rows, jint cols, jlong b, jlong colScale, jlong colShift,
                            jlong rowFactor, jlong rowShift, jlong w2, jlong b2) {
  guarded(env, [&] {
    Context& c = ctx();
    long long n = (long long)rows * cols;
    if (cols % 4 == 0) {
      unsigned x = (unsigned)((cols / 4 + 255) / 256);
      dim3 grid(x, (unsigned)std::max(1, std::min(rows, (int)(16384 / x))));
      scaleShiftWeight4Kernel<<<grid, 256, 0, c.stream>>>(F(w), rows, cols, FN(colScale), FN(rowFactor), F(w2));
    } else {
      scaleShiftWeightKernel<<<gridFor(n), 256, 0, c.stream>>>(F(w), cols, n, FN(colScale), FN(rowFactor), F(w2));
    }
    CHECK_LAUNCH();
    if (b2) {
      scaleShiftBiasKernel<<<rows, rowThreads(cols), 0, c.stream>>>(F(w), cols, FN(b), FN(colShift), FN(rowFactor),
                                                                    FN(rowShift), F(b2));
      CHECK_LAUNCH();
    }
  });
}

JNI(void, scaleShiftLinearBackward)(JNIEnv* env, jclass, jlong w, jint rows, jint cols, jlong b, jlong colScale,
                                    jlong colShift, jlong rowFactor, jlong rowShift, jlong dW, jlong dB, jlong dColScale,
                                    jlong dColShift, jlong dRowFactor, jlong dRowShift) {
  guarded(env, [&] {
    Context& c = ctx();
    Scratch gb1(sizeof(double) * rows, c.stream), factor(sizeof(double) * rows, c.stream);
    bool shift = colShift && dB;
    if (rowFactor || rowShift || shift) {
      scaleShiftRowBackwardKernel<<<rows, rowThreads(cols), 0, c.stream>>>(
          F(w), cols, FN(b), FN(colScale), FN(colShift), FN(rowFactor), FN(rowShift), F(dW), FN(dB), FN(dRowFactor),
          FN(dRowShift), shift ? gb1.as<double>() : nullptr);
      CHECK_LAUNCH();
    }
    if (colScale) {
      // ds[c] = Σ_r dW2[r, c]·r[r]·W[r, c]
      if (rowFactor) {
        floatToDoubleKernel<<<gridFor(rows), 256, 0, c.stream>>>(F(rowFactor), factor.as<double>(), rows);
        CHECK_LAUNCH();
      }
      columnReduce(F(dW), F(w), nullptr, rowFactor ? factor.as<double>() : nullptr, rows, cols, F(dColScale), c.stream);
    }
    // dδ[c] = Σ_r W[r, c]·db1[r]
    if (shift) columnReduce(F(w), nullptr, nullptr, gb1.as<double>(), rows, cols, F(dColShift), c.stream);
  });
}

// The LWC warp kernels' launch (groups up to 256): σ(γ), σ(β) of every group into scratch, then
// launch(E, σ(γ), σ(β)) with E = elements a lane holds (std::integral_constant: the kernel's template argument).
template <typename Launch>
void withGroupSigmoids(const float* gamma, const float* beta, long long total, int group, cudaStream_t s, Launch launch) {
  Scratch sig(2 * total * sizeof(float), s);
  float* sg = sig.as<float>();
  sigmoidPairsKernel<<<gridFor(total), 256, 0, s>>>(gamma, beta, total, sg, sg + total);
  if (group <= 32) launch(std::integral_constant<int, 1>(), sg, sg + total);
  else if (group <= 64) launch(std::integral_constant<int, 2>(), sg, sg + total);
  else if (group <= 128) launch(std::integral_constant<int, 4>(), sg, sg + total);
  else launch(std::integral_constant<int, 8>(), sg, sg + total);
}

JNI(void, fakeQuantizeClipped)(JNIEnv* env, jclass, jlong w, jint rows, jint cols, jint group, jint bits, jlong gamma,
                               jlong beta, jlong out) {
  guarded(env, [&] {
    long long total = (long long)rows * (cols / group);
    unsigned blocks = (unsigned)((total * 32 + 255) / 256);  // 8 warps a block
    cudaStream_t s = ctx().stream;
    if (group <= 256) {
      withGroupSigmoids(F(gamma), F(beta), total, group, s, [&](auto e, const float* sg, const float* sb) {
        fakeQuantizeClippedWarpKernel<decltype(e)::value><<<blocks, 256, 0, s>>>(F(w), group, bits, sg, sb, total, F(out));
      });
    } else fakeQuantizeClippedKernel<<<(unsigned)total, rowThreads(group), 0, s>>>(F(w), cols, group, bits, F(gamma), F(beta), F(out));
    CHECK_LAUNCH();
  });
}

JNI(void, fakeQuantizeClippedBackward)(JNIEnv* env, jclass, jlong w, jint rows, jint cols, jint group, jint bits,
                                       jlong gamma, jlong beta, jlong dOut, jlong dW, jlong dGamma, jlong dBeta) {
  guarded(env, [&] {
    long long total = (long long)rows * (cols / group);
    unsigned blocks = (unsigned)((total * 32 + 255) / 256);  // 8 warps a block
    cudaStream_t s = ctx().stream;
    if (group <= 256) {
      withGroupSigmoids(F(gamma), F(beta), total, group, s, [&](auto e, const float* sg, const float* sb) {
        fakeQuantizeClippedBackwardWarpKernel<decltype(e)::value><<<blocks, 256, 0, s>>>(F(w), group, bits, sg, sb, F(dOut),
                                                                                         total, F(dW), F(dGamma), F(dBeta));
      });
    } else fakeQuantizeClippedBackwardKernel<<<(unsigned)total, rowThreads(group), 0, s>>>(
        F(w), cols, group, bits, F(gamma), F(beta), F(dOut), F(dW), F(dGamma), F(dBeta));
    CHECK_LAUNCH();
  });
}

JNI(void, adamW)(JNIEnv* env, jclass, jlong p, jlong g, jlong m, jlong v, jlong n, jdouble lr, jdouble beta1,
                 jdouble beta2, jdouble eps, jdouble wd, jdouble c1, jdouble c2) {
  guarded(env, [&] {
    adamWKernel<<<gridFor(n), 256, 0, ctx().stream>>>(F(p), F(g), F(m), F(v), n, lr, beta1, beta2, eps, wd, c1, c2);
    CHECK_LAUNCH();
  });
}

JNI(void, clampAwayFromZero)(JNIEnv* env, jclass, jlong a, jlong n, jfloat min) {
  guarded(env, [&] {
    clampAwayFromZeroKernel<<<gridFor(n), 256, 0, ctx().stream>>>(F(a), n, min);
    CHECK_LAUNCH();
  });
}
