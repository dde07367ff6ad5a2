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

// Wrong on purpose: the two halves of a block wait at different __syncthreads().
__global__ void split_barrier(float* x) {
  if (threadIdx.x < blockDim.x / 2) {
    __syncthreads();
    x[threadIdx.x] = 1.0f;
  } else {
    x[threadIdx.x] = 2.0f;
    __syncthreads();
  }
}

// Wrong on purpose: half of each warp returns before a shuffle.
__global__ void divergent_shuffle(float* x) {
  if (threadIdx.x % 32 < 16) return;
  x[threadIdx.x] = __shfl_xor_sync(GPUNN_FULL_MASK, x[threadIdx.x], 1);
}

// Wrong on purpose: half of each warp waits in __syncwarp, the other half shuffles.
__global__ void mixed_warp_primitives(float* x) {
  if (threadIdx.x % 32 < 16)
    __syncwarp();
  else
    x[threadIdx.x] = __shfl_down_sync(GPUNN_FULL_MASK, x[threadIdx.x], 1);
}

// Not emulated: a mask other than the full warp.
__global__ void partial_mask(int* out) {
  out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1, 0);
}

// Shuffles and votes, to check lane arithmetic; the first warp writes out[32 * k + lane]
// for the k-th kind (the second one runs them too, and must not interfere).
__global__ void shuffles(int* out) {
  const int lane = threadIdx.x % 32;
  int r[8];
  r[0] = __shfl_down_sync(GPUNN_FULL_MASK, lane, 3);
  r[1] = __shfl_up_sync(GPUNN_FULL_MASK, lane, 5);
  r[2] = __shfl_sync(GPUNN_FULL_MASK, lane * 10, 7);
  r[3] = __shfl_sync(GPUNN_FULL_MASK, lane, 9, 8);         // lane 1 of its 8 lanes
  r[4] = __shfl_xor_sync(GPUNN_FULL_MASK, lane, 5, 16);    // within 16 lanes
  r[5] = __shfl_down_sync(GPUNN_FULL_MASK, lane, 2, 8);    // not past its 8 lanes
  r[6] = static_cast<int>(__ballot_sync(GPUNN_FULL_MASK, lane % 3 == 0));
  r[7] = __any_sync(GPUNN_FULL_MASK, lane == 31) + 2 * __all_sync(GPUNN_FULL_MASK, lane < 31);
  if (threadIdx.x < 32)
    for (int k = 0; k < 8; ++k) out[32 * k + lane] = r[k];
}

GPUNN_EXPORT(block_partials<float>)
GPUNN_EXPORT(block_partials<double>)
GPUNN_EXPORT(row_max<float>)
GPUNN_EXPORT(row_max<double>)
GPUNN_EXPORT(count_threads)
GPUNN_EXPORT(divergent_barrier)
GPUNN_EXPORT(split_barrier)
GPUNN_EXPORT(divergent_shuffle)
GPUNN_EXPORT(mixed_warp_primitives)
GPUNN_EXPORT(partial_mask)
GPUNN_EXPORT(shuffles)
