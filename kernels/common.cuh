// Shared helpers for gpunn kernels (header only). The same sources are compiled three
// ways: by NVRTC through CuPy at run time (gpunn.backends.kernels), by nvcc in CI
// (tests/test_packaging.py: PTX for compute_80 and compute_90), and by the host C++
// compiler with tests/cuda_emu/shim.h (GPUNN_EMULATE) so CI runs every kernel on a CPU.
//
// Launch contract used by every gpunn kernel: 1-D grid of 1-D blocks whose size is a
// multiple of 32 and at most 1024 (GPUNN_MAX_THREADS). Elementwise kernels walk their
// n elements with a grid-stride loop, so correctness never depends on the grid size
// and one launch covers any array size, 0 included. Row kernels give each row to one
// warp or one block, looping over rows the same way.
//
// Exports: every kernel a launcher may call is listed once at the end of its file with
// GPUNN_EXPORT(name<types>) (GPUNN_EXPORT_HALF for the 16-bit instantiations, __half
// and __nv_bfloat16, built in a second module with GPUNN_HALF defined). The Python
// loader reads those lines for CuPy's name_expressions; nvcc and the emulator
// instantiate the listed templates from them.
#pragma once

#if defined(GPUNN_HALF) && !defined(GPUNN_EMULATE)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#define GPUNN_MAX_THREADS 1024
#define GPUNN_MAX_WARPS (GPUNN_MAX_THREADS / 32)
#define GPUNN_FULL_MASK 0xffffffffu

#define GPUNN_CAT_(a, b) a##b
#define GPUNN_CAT(a, b) GPUNN_CAT_(a, b)

#if defined(GPUNN_EMULATE)
// the emulator registers each listed kernel under its name expression
#define GPUNN_EXPORT(...)                                              \
  static const bool GPUNN_CAT(gpunn_export_, __COUNTER__) =            \
      ::gpunn_emu::register_kernel(#__VA_ARGS__, &__VA_ARGS__);
#elif defined(__CUDACC_RTC__)
// NVRTC instantiates from the name expressions CuPy passes
#define GPUNN_EXPORT(...)
#else
// nvcc: taking the address instantiates the template, so CI compiles every kernel
#define GPUNN_EXPORT(...) \
  [[maybe_unused]] static void* const GPUNN_CAT(gpunn_export_, __COUNTER__) =   \
      (void*)&__VA_ARGS__;
#endif

#if defined(GPUNN_HALF)
#define GPUNN_EXPORT_HALF(...) GPUNN_EXPORT(__VA_ARGS__)
#else
#define GPUNN_EXPORT_HALF(...)
#endif

namespace gpunn {

// The type arithmetic is done in: float for the 16-bit types, the type itself
// otherwise.
template <typename T> struct acc { using type = T; };
#if defined(GPUNN_HALF)
template <> struct acc<__half> { using type = float; };
template <> struct acc<__nv_bfloat16> { using type = float; };
#endif

template <typename T> __device__ __forceinline__ typename acc<T>::type load(const T& x) {
  return static_cast<typename acc<T>::type>(x);
}

template <typename T, typename A> __device__ __forceinline__ T store(A x) {
  return static_cast<T>(x);
}

// Whether T is void (no std <type_traits> under NVRTC).
template <typename T> struct is_void { static constexpr bool value = false; };
template <> struct is_void<void> { static constexpr bool value = true; };

// for (i = thread's first index; i < n; i += total threads)
#define GPUNN_GRID_STRIDE(i, n)                                               \
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
       i += (long long)blockDim.x * gridDim.x)

// -infinity (NVRTC has no INFINITY macro).
template <typename A> __device__ __forceinline__ A neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() {
  return __int_as_float(static_cast<int>(0xff800000u));
}
template <> __device__ __forceinline__ double neg_inf<double>() {
  return __longlong_as_double(static_cast<long long>(0xfff0000000000000ull));
}

// Sum over the 32 lanes of a warp; every lane gets the total. All lanes must call it.
template <typename A> __device__ __forceinline__ A warp_sum(A v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(GPUNN_FULL_MASK, v, offset);
  return v;
}

// Maximum over the 32 lanes of a warp; every lane gets it. All lanes must call it.
template <typename A> __device__ __forceinline__ A warp_max(A v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    A other = __shfl_xor_sync(GPUNN_FULL_MASK, v, offset);
    v = other > v ? other : v;
  }
  return v;
}

// Reduces `v` over the block with `warp_op` (warp_sum or warp_max); every thread gets
// the result. All threads of the block must call it; `scratch` is __shared__
// A[GPUNN_MAX_WARPS], free again when it returns. `fill` is the identity of the op.
template <typename A, typename WarpOp>
__device__ __forceinline__ A block_reduce(A v, A* scratch, WarpOp warp_op, A fill) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_warps = blockDim.x >> 5;
  v = warp_op(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  A total = warp_op(lane < n_warps ? scratch[lane] : fill);
  __syncthreads();  // scratch may be reused by the caller
  return total;
}

// Sum over the block, every thread gets it (see block_reduce).
template <typename A> __device__ __forceinline__ A block_sum(A v, A* scratch) {
  return block_reduce(v, scratch, warp_sum<A>, A(0));
}

// Maximum over the block of a floating type, every thread gets it (see block_reduce).
template <typename A> __device__ __forceinline__ A block_max(A v, A* scratch) {
  return block_reduce(v, scratch, warp_max<A>, neg_inf<A>());
}

// Column sums of a row-major (rows, cols) matrix in a fixed order (no atomics). The
// grid is a multiple of `chunks`: block b takes row chunk b % chunks and the 32-column
// tiles b / chunks, b / chunks + gridDim / chunks, ...; lane = column in the tile;
// warp w sums rows chunk * warps + w, + chunks * warps, ... in order, then warp 0
// adds the warps in order and calls write(chunk, col, total). column(col) sets up
// once per column and returns term, term(i) the S to add for element i = row * cols
// + col (it may also write outputs). S is trivially constructible with S{} zero and
// has +=. Every thread runs every tile, so the barriers are uniform.
template <typename S, typename ColumnF, typename WriteF>
__device__ __forceinline__ void column_partials(long long rows, long long cols,
                                                long long chunks, ColumnF column,
                                                WriteF write) {
  __shared__ S scratch[GPUNN_MAX_WARPS][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_warps = blockDim.x >> 5;
  const long long chunk = blockIdx.x % chunks, tiles = (cols + 31) / 32;
  for (long long tile = blockIdx.x / chunks; tile < tiles;
       tile += gridDim.x / chunks) {
    const long long col = tile * 32 + lane;
    S sum{};
    if (col < cols) {
      auto term = column(col);
      for (long long row = chunk * n_warps + warp; row < rows;
           row += chunks * n_warps)
        sum += term(row * cols + col);
    }
    scratch[warp][lane] = sum;
    __syncthreads();
    if (warp == 0 && col < cols) {
      S total = scratch[0][lane];
      for (int w = 1; w < n_warps; ++w) total += scratch[w][lane];
      write(chunk, col, total);
    }
    __syncthreads();
  }
}

// column_partials' write for one plane: partials[chunk * cols + col] = total.
template <typename S> struct ColumnWriter {
  S* partials;
  long long cols;
  __device__ __forceinline__ void operator()(long long chunk, long long col,
                                             const S& total) const {
    partials[chunk * cols + col] = total;
  }
};

}  // namespace gpunn
