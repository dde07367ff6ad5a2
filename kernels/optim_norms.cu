// Norms, sums and clipping of flat arena buffers (gpunn.backends.gpu_optim): the
// global gradient norm, per-tensor norms and LARS/LAMB trust ratios, norm and value
// clipping, and the sum step_is_finite checks.
//
// Every reduction is deterministic (no atomics): a first kernel writes one partial
// sum per block (or per table entry) into a float64 workspace, a second adds the
// partials in a fixed order. Sums accumulate in double for float and double inputs.
//
// Launch contracts (1-D grids of 1-D blocks, block a multiple of 32):
//   sum_blocks      any grid G; partials has G entries. Grid-stride over n.
//   sum_finish      one block (other blocks do nothing).
//   segment_sumsq   any grid; block b walks the table entries b, b + grid, ... (entry e
//                   covers elements [entry_start[e], entry_start[e + 1]) of one tensor).
//   *_finish of segments: one warp per segment, grid-stride over warps (launch
//                   32 * n_segments threads, any grid).
//   scale_by_norm, clip_values: any grid, grid-stride over n; n may be 0.
// Optional arrays are NULL when absent (CuPy and the emulator pass None as NULL).
// Instantiate: <float>, <double>.
#include "common.cuh"

namespace {

// The warp's segment: all 32 lanes of a warp share it (block sizes are multiples of
// 32), so warp shuffles inside the loop are safe.
#define OPTIM_FOR_WARP_SEGMENT(s, n_segments)                                         \
  for (long long s = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;        \
       s < (n_segments); s += ((long long)blockDim.x * gridDim.x) >> 5)

// The sum of the partials of segment s's entries, the same lane order every time;
// every lane gets it.
__device__ __forceinline__ double segment_total(const double* partials,
                                                const long long* seg_entry,
                                                long long s) {
  double total = 0;
  for (long long e = seg_entry[s] + (threadIdx.x & 31); e < seg_entry[s + 1]; e += 32)
    total += partials[e];
  return gpunn::warp_sum(total);
}

}  // namespace

// partials[block] = sum over the block's grid-stride elements of x (x^2 if square).
template <typename T>
__global__ void sum_blocks(const T* __restrict__ x, long long n, int square,
                           double* __restrict__ partials) {
  __shared__ double scratch[GPUNN_MAX_WARPS];
  double total = 0;
  GPUNN_GRID_STRIDE(i, n) {
    const double v = static_cast<double>(x[i]);
    total += square ? v * v : v;
  }
  total = gpunn::block_sum(total, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// out[0] = the sum of the n partials (its square root if root), rounded to T once.
template <typename T>
__global__ void sum_finish(const double* __restrict__ partials, long long n, int root,
                           T* __restrict__ out) {
  __shared__ double scratch[GPUNN_MAX_WARPS];
  if (blockIdx.x != 0) return;  // the whole block returns: no barrier is split
  double total = 0;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) total += partials[i];
  total = gpunn::block_sum(total, scratch);
  if (threadIdx.x == 0) out[0] = static_cast<T>(root ? sqrt(total) : total);
}

// Per table entry e: partials[e] = sum of a^2 over the entry, and when b is given
// partials[n_entries + e] = sum of b^2.
template <typename T>
__global__ void segment_sumsq(const T* __restrict__ a, const T* __restrict__ b,
                              const long long* __restrict__ entry_start,
                              long long n_entries, double* __restrict__ partials) {
  __shared__ double scratch[GPUNN_MAX_WARPS];
  for (long long e = blockIdx.x; e < n_entries; e += gridDim.x) {
    double sum_a = 0, sum_b = 0;
    for (long long i = entry_start[e] + threadIdx.x; i < entry_start[e + 1];
         i += blockDim.x) {
      const double va = static_cast<double>(a[i]);
      sum_a += va * va;
      if (b != nullptr) {
        const double vb = static_cast<double>(b[i]);
        sum_b += vb * vb;
      }
    }
    sum_a = gpunn::block_sum(sum_a, scratch);
    if (b != nullptr) sum_b = gpunn::block_sum(sum_b, scratch);  // uniform branch
    if (threadIdx.x == 0) {
      partials[e] = sum_a;
      if (b != nullptr) partials[n_entries + e] = sum_b;
    }
  }
}

// out[s] = sqrt(sum of segment s's partials), rounded to T once.
template <typename T>
__global__ void segment_norms_finish(const double* __restrict__ partials,
                                     const long long* __restrict__ seg_entry,
                                     long long n_segments, T* __restrict__ out) {
  OPTIM_FOR_WARP_SEGMENT(s, n_segments) {
    const double total = segment_total(partials, seg_entry, s);
    if ((threadIdx.x & 31) == 0) out[s] = static_cast<T>(sqrt(total));
  }
}

// The layer-wise trust ratio of each segment from its two norms w (partials[0:E])
// and u (partials[E:2E]), as OptimOps.trust_ratio and _adapted compute it in T:
// coef * w / (u + decay * w + eps), decay = wd * adapt[s] (wd without adapt), and 1
// where w or u is 0 or where adapt[s] is 0.
template <typename T>
__global__ void trust_ratio_finish(const double* __restrict__ partials,
                                   long long n_entries,
                                   const long long* __restrict__ seg_entry,
                                   long long n_segments, const T* __restrict__ adapt,
                                   T coef, T wd, T eps, T* __restrict__ ratio) {
  OPTIM_FOR_WARP_SEGMENT(s, n_segments) {
    const double w_sum = segment_total(partials, seg_entry, s);
    const double u_sum = segment_total(partials + n_entries, seg_entry, s);
    if ((threadIdx.x & 31) == 0) {
      const T w = static_cast<T>(sqrt(w_sum)), u = static_cast<T>(sqrt(u_sum));
      const T decay = adapt != nullptr ? wd * adapt[s] : wd;
      T r = T(1);
      if (w > T(0) && u > T(0)) r = coef * w / (u + decay * w + eps);
      if (adapt != nullptr && !(adapt[s] > T(0))) r = T(1);
      ratio[s] = r;
    }
  }
}

// x *= min(1, max_norm / (norm[0] + eps)) (NaN propagates, as numpy.minimum), with the
// norm read from device memory: clip_grad_norm_ without a host sync.
template <typename T>
__global__ void scale_by_norm(T* __restrict__ x, long long n,
                              const T* __restrict__ norm, T max_norm, T eps) {
  T scale = max_norm / (norm[0] + eps);
  scale = (scale != scale || scale < T(1)) ? scale : T(1);
  GPUNN_GRID_STRIDE(i, n) { x[i] = x[i] * scale; }
}

// x = clip(x, lo, hi) in place; NaN stays NaN (numpy.clip).
template <typename T>
__global__ void clip_values(T* __restrict__ x, long long n, T lo, T hi) {
  GPUNN_GRID_STRIDE(i, n) {
    T v = x[i];
    v = v < lo ? lo : v;
    x[i] = v > hi ? hi : v;
  }
}

GPUNN_EXPORT(sum_blocks<float>)
GPUNN_EXPORT(sum_blocks<double>)
GPUNN_EXPORT(sum_finish<float>)
GPUNN_EXPORT(sum_finish<double>)
GPUNN_EXPORT(segment_sumsq<float>)
GPUNN_EXPORT(segment_sumsq<double>)
GPUNN_EXPORT(segment_norms_finish<float>)
GPUNN_EXPORT(segment_norms_finish<double>)
GPUNN_EXPORT(trust_ratio_finish<float>)
GPUNN_EXPORT(trust_ratio_finish<double>)
GPUNN_EXPORT(scale_by_norm<float>)
GPUNN_EXPORT(scale_by_norm<double>)
GPUNN_EXPORT(clip_values<float>)
GPUNN_EXPORT(clip_values<double>)
