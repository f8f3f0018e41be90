#!/usr/bin/env bash
# Builds libblockquant_cuda.so (the CUDA backend's native half) with nvcc, for sm_80 (A100) and sm_90 (H100).
#   build-native.sh SOURCE_DIR JNI_HEADER_DIR JAVA_INCLUDE_DIR OUT_DIR
# SOURCE_DIR holds blockquant_cuda.cu; JNI_HEADER_DIR the header `javac -h` made for CudaNative;
# JAVA_INCLUDE_DIR a JDK's include/ (jni.h, linux/jni_md.h). Without nvcc it says so and exits 0: the CPU
# backend is used and nothing of the CUDA backend is built.
set -euo pipefail
src=$1 hdr=$2 jinc=$3 out=$4
nvcc=$(command -v nvcc || true)
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc" ]; then
  echo "build-native: no nvcc found; the CUDA backend is not built (the CPU backend is used)"
  exit 0
fi
cuda_home=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
if [ ! -e "$cuda_home/include/cublas_v2.h" ] && [ ! -e "$cuda_home/targets/x86_64-linux/include/cublas_v2.h" ]; then
  echo "build-native: $cuda_home has no cuBLAS headers; the CUDA backend is not built (the CPU backend is used)"
  exit 0
fi
if [ ! -e "$hdr/io_blockquant_cuda_CudaNative.h" ]; then
  echo "build-native: no JNI header in $hdr (javac -h writes it when CudaNative compiles: mvn clean -Pcuda package)" >&2
  exit 1
fi
mkdir -p "$out"
"$nvcc" -O3 -std=c++17 -shared -Xcompiler -fPIC \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  -I"$hdr" -I"$jinc" -I"$jinc/linux" \
  "$src/blockquant_cuda.cu" -o "$out/libblockquant_cuda.so" \
  -lcublas -lcusolver
echo "build-native: $out/libblockquant_cuda.so ($(du -h "$out/libblockquant_cuda.so" | cut -f1))"
