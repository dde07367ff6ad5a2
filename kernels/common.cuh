// Shared helpers for gpunn kernels (header only; compiled by NVRTC through CuPy and by
// nvcc in CI).
//
// Launch contract used by every gpunn kernel: 1-D grid of 1-D blocks, any grid size;
// each kernel walks its n elements with a grid-stride loop, so correctness never
// depends on the launch shape and one launch covers any array size (including 0).
#pragma once

#include <cuda_fp16.h>

namespace gpunn {

// The type arithmetic is done in: float for half, the type itself otherwise.
template <typename T> struct acc { using type = T; };
template <> struct acc<__half> { using type = float; };

template <typename T> __device__ __forceinline__ typename acc<T>::type load(const T& x) {
  return static_cast<typename acc<T>::type>(x);
}

template <typename T, typename A> __device__ __forceinline__ T store(A x) {
  return static_cast<T>(x);
}

// for (i = thread's first index; i < n; i += total threads)
#define GPUNN_GRID_STRIDE(i, n)                                               \
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
       i += (long long)blockDim.x * gridDim.x)

}  // namespace gpunn
