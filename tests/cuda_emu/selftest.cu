// Kernels that exercise the emulator (tests/test_cuda_emu.py); not shipped.
// Launch: 1-D grid of 1-D blocks (a multiple of 32 threads).
#include "common.cuh"

// out[b] = sum of x over the grid-stride elements block b visits (block_sum:
// shared memory, __syncthreads and shuffles).
template <typename T>
__global__ void block_partials(const T* x, T* out, long long n) {
  __shared__ T scratch[GPUNN_MAX_WARPS];
  T v = 0;
  GPUNN_GRID_STRIDE(i, n) { v += x[i]; }
  v = gpunn::block_sum(v, scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = v;
}

// One warp per row: out[r] = max over the row's cols entries (warp_max).
template <typename T>
__global__ void row_max(const T* x, T* out, long long rows, long long cols) {
  const long long warps = (long long)gridDim.x * (blockDim.x / 32);
  for (long long r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
       r += warps) {
    T v = gpunn::neg_inf<T>();
    for (long long c = threadIdx.x % 32; c < cols; c += 32) {
      T e = x[r * cols + c];
      v = e > v ? e : v;
    }
    v = gpunn::warp_max(v);
    if (threadIdx.x % 32 == 0) out[r] = v;
  }
}

// Counts the threads that ran, with atomicAdd.
__global__ void count_threads(int* counter) { atomicAdd(counter, 1); }

// Wrong on purpose: the threads of a block's first half return before the barrier.
__global__ void divergent_barrier(float* x) {
  if (threadIdx.x < blockDim.x / 2) return;
  __syncthreads();
  x[threadIdx.x] = 1.0f;
}

// Shuffles up, down and indexed, to check lane arithmetic: out[lane] for 3 kinds.
__global__ void shuffles(int* out) {
  const int lane = threadIdx.x % 32;
  if (threadIdx.x >= 32) return;
  out[lane] = __shfl_down_sync(GPUNN_FULL_MASK, lane, 3);
  out[32 + lane] = __shfl_up_sync(GPUNN_FULL_MASK, lane, 5);
  out[64 + lane] = __shfl_sync(GPUNN_FULL_MASK, lane * 10, 7);
}

GPUNN_EXPORT(block_partials<float>)
GPUNN_EXPORT(block_partials<double>)
GPUNN_EXPORT(row_max<float>)
GPUNN_EXPORT(row_max<double>)
GPUNN_EXPORT(count_threads)
GPUNN_EXPORT(divergent_barrier)
GPUNN_EXPORT(shuffles)
