// Counter-based dropout: the mask is Philox4x64-10 words compared with an integer
// threshold, the same stream NumPy's Philox gives (gpunn/backends/philox.py), so a
// GPU mask equals the CPU one bit for bit and is regenerable from (key, counter).
//
// Stream: word j of a draw starting at counter C is word j % 4 of
// Philox4x64-10(C + 1 + j / 4, key) (a 256-bit counter, NumPy's increment-before-use).
// Element j is kept iff word j >= threshold (= floor(rate * 2**64)).
//
// Launch contract (common.cuh): 1-D grid of 1-D blocks, block a multiple of 32.
//   dropout_forward<T>(x, y, bits, n, k0, k1, c0, c1, c2, c3, threshold, scale):
//     grid-stride over the ceil(n / 4) Philox blocks, one block (4 elements) per
//     thread-iteration; y[j] = x[j] * (keep ? scale : 0) and the keep bits packed into
//     uint32 words: bit j % 32 of bits[j / 32], padding bits 0. The 8 threads of a
//     word OR their nibbles with warp shuffles, so the loop runs warp-uniformly (a
//     warp's trip count depends on its first index only). bits has ceil(n / 32)
//     words. n may be 0.
//   dropout_backward<T>(dy, bits, dx, n, scale): grid-stride over n elements,
//     dx[j] = dy[j] * (bit j ? scale : 0).
// Args: T arrays contiguous with n elements; k0, k1 the key words and c0..c3 the
// counter words (unsigned long long, low first); threshold unsigned long long; scale
// in A (float for half): 1 / (1 - rate) rounded to T once by the launcher.
// Instantiate: float, double, __half.
#include "common.cuh"

namespace {

typedef unsigned long long u64;

struct Words4 {
  u64 v[4];
};

// Philox4x64-10 (Salmon et al., 2011, "Parallel random numbers: as easy as 1, 2, 3";
// the constants of Random123 and NumPy).
__device__ __forceinline__ Words4 philox4x64_10(Words4 ctr, u64 k0, u64 k1) {
  const u64 M0 = 0xD2E7470EE14C6C93ull, M1 = 0xCA5A826395121157ull;
  const u64 W0 = 0x9E3779B97F4A7C15ull, W1 = 0xBB67AE8584CAA73Bull;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += W0;
      k1 += W1;
    }
    const u64 hi0 = __umul64hi(M0, ctr.v[0]), lo0 = M0 * ctr.v[0];
    const u64 hi1 = __umul64hi(M1, ctr.v[2]), lo1 = M1 * ctr.v[2];
    ctr = Words4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
  }
  return ctr;
}

// The 256-bit counter (c0..c3, low first) plus add (add >= 1), with carries.
__device__ __forceinline__ Words4 counter_plus(u64 c0, u64 c1, u64 c2, u64 c3, u64 add) {
  Words4 ctr{{c0 + add, c1, c2, c3}};
  if (ctr.v[0] < add && ++ctr.v[1] == 0 && ++ctr.v[2] == 0) ++ctr.v[3];
  return ctr;
}

}  // namespace

template <typename T> using acc_t = typename gpunn::acc<T>::type;

template <typename T>
__global__ void dropout_forward(const T* __restrict__ x, T* __restrict__ y,
                                unsigned* __restrict__ bits, long long n, u64 k0,
                                u64 k1, u64 c0, u64 c1, u64 c2, u64 c3, u64 threshold,
                                acc_t<T> scale) {
  using A = acc_t<T>;
  const long long blocks = (n + 3) / 4, stride = (long long)blockDim.x * gridDim.x;
  const int lane = threadIdx.x & 31;
  for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
       t - lane < blocks; t += stride) {  // warp-uniform: t - lane is the warp's first
    unsigned nibble = 0;
    if (t < blocks) {
      const Words4 w = philox4x64_10(counter_plus(c0, c1, c2, c3, (u64)t + 1), k0, k1);
      for (int i = 0; i < 4; ++i) {
        const long long j = 4 * t + i;
        if (j >= n) break;
        const bool keep = w.v[i] >= threshold;
        y[j] = gpunn::store<T>(gpunn::load(x[j]) * (keep ? scale : A(0)));
        nibble |= (unsigned)keep << i;
      }
    }
    unsigned word = nibble << (4 * (t & 7));  // t & 7 == lane & 7
    word |= __shfl_xor_sync(GPUNN_FULL_MASK, word, 1);
    word |= __shfl_xor_sync(GPUNN_FULL_MASK, word, 2);
    word |= __shfl_xor_sync(GPUNN_FULL_MASK, word, 4);
    if ((t & 7) == 0 && t < blocks) bits[t >> 3] = word;
  }
}

template <typename T>
__global__ void dropout_backward(const T* __restrict__ dy,
                                 const unsigned* __restrict__ bits, T* __restrict__ dx,
                                 long long n, acc_t<T> scale) {
  using A = acc_t<T>;
  GPUNN_GRID_STRIDE(j, n) {
    const bool keep = (bits[j >> 5] >> (j & 31)) & 1u;
    dx[j] = gpunn::store<T>(gpunn::load(dy[j]) * (keep ? scale : A(0)));
  }
}

GPUNN_EXPORT(dropout_forward<float>)
GPUNN_EXPORT(dropout_forward<double>)
GPUNN_EXPORT(dropout_backward<float>)
GPUNN_EXPORT(dropout_backward<double>)
GPUNN_EXPORT_HALF(dropout_forward<__half>)
GPUNN_EXPORT_HALF(dropout_backward<__half>)
GPUNN_EXPORT_HALF(dropout_forward<__nv_bfloat16>)
GPUNN_EXPORT_HALF(dropout_backward<__nv_bfloat16>)
