// Fused losses: softmax cross-entropy and binary cross-entropy on logits, the loss and
// dlogits in one pass, with the formulas (and operation order) of the reference ops in
// gpunn/backends/ops_losses.py. No atomics: every kernel writes per-row or per-block
// terms that sum_terms adds up in a fixed order, so a call is bitwise reproducible.
// A is the accumulate type (float for float and __half, double for double).
//
// ce_stats<T, L>(labels, class_weight, n, c, ignore, flags, A* stats): ONE block (any
//   size). stats[0] = 1 / D, D = sum of w[y_i] over the kept rows (their count without
//   class weights; 1 when no row is kept); stats[1] = sum_c w_c (C without weights).
// ce_labels<T, L, BLOCK_ROWS>(logits, labels, sample_weight, class_weight, stats,
//   dlogits, A* row_loss, n, c, A temperature, A one_minus_ls, A ls_over_c, A inv_n,
//   long long ignore, int flags): integer labels (L = int or long long).
// ce_rows<T, BLOCK_ROWS>(logits, targets, sample_weight, class_weight, dlogits,
//   A* row_loss, n, c, A temperature, A one_minus_ls, A ls_over_c, A inv_n, A n_f,
//   int flags): probability rows.
//   Row kernels: BLOCK_ROWS false: one warp per row (rows walked by a grid-stride
//   loop over warps, blockDim.x / 32 rows per block; the launcher's choice for
//   C <= 1024); true: one block per row (grid-stride loop over blocks). Each row:
//   pass 1 reads the logits once for the online max / sum of exp, pass 2 writes
//   dlogits and finishes the row's loss term into row_loss[i]. Ignored rows write
//   zeros without reading their logits; a label outside [0, C) that is not ignored
//   gives NaN (labels are checked once per dataset).
// bce<T>(logits, targets, sample_weight, pos_weight, dlogits, A* partials, n, k,
//   A one_minus_ls, A half_ls, A inv_size, long long pw_size, int flags): any 1-D grid
//   (grid-stride over n * k elements); partials[blockIdx.x] = the block's sum of
//   s_i * value_ij * inv_size (value_ij alone without sample weights).
// sum_terms<T>(const A* terms, long long m, A scale, T* out): ONE block (any size);
//   out[0] = scale * sum(terms), 0 for m = 0.
// Absent optional arrays may be any valid pointer: their flag bit is 0. flags: 1 sample
// weights, 2 class / pos weights, 4 ignore_index, 8 label smoothing. All arrays
// contiguous; logits, dlogits (n, c), targets like logits, labels (n,), weights of T.
#include "common.cuh"

namespace gpunn {

enum LossFlags { HAS_SW = 1, HAS_W = 2, HAS_IGNORE = 4, SMOOTH = 8 };

template <typename T> using acc_t = typename acc<T>::type;

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float log_(float x) { return logf(x); }
__device__ __forceinline__ double log_(double x) { return log(x); }
__device__ __forceinline__ float log1p_(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p_(double x) { return log1p(x); }
__device__ __forceinline__ float abs_(float x) { return fabsf(x); }
__device__ __forceinline__ double abs_(double x) { return fabs(x); }
template <typename A> __device__ __forceinline__ A nan_();
template <> __device__ __forceinline__ float nan_<float>() {
  return __int_as_float(0x7fc00000);
}
template <> __device__ __forceinline__ double nan_<double>() {
  return __longlong_as_double(0x7ff8000000000000ll);
}

// A running log-sum-exp: max m and s = sum exp(z - m); (-inf, 0) when empty.
template <typename A> struct Lse {
  A m, s;
};

template <typename A> __device__ __forceinline__ Lse<A> lse_add(Lse<A> a, A z) {
  if (z > a.m) return {z, a.s * exp_(a.m - z) + A(1)};
  if (z == neg_inf<A>()) return a;  // a -inf logit adds exp(-inf) = 0
  return {a.m, a.s + exp_(z - a.m)};
}

// Symmetric in its arguments, so both lanes of a shuffle get the same bits.
template <typename A> __device__ __forceinline__ Lse<A> lse_merge(Lse<A> a, Lse<A> b) {
  if (a.m == neg_inf<A>()) return b;
  if (b.m == neg_inf<A>()) return a;
  A m = a.m > b.m ? a.m : b.m;
  return {m, a.s * exp_(a.m - m) + b.s * exp_(b.m - m)};
}

// The threads that share a row: one warp, with shuffles only.
struct WarpRow {
  __device__ int rank() const { return threadIdx.x & 31; }
  __device__ int size() const { return 32; }
  __device__ long long first() const {
    return blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5);
  }
  __device__ long long stride() const {
    return (long long)gridDim.x * (blockDim.x >> 5);
  }
  template <typename A> __device__ A sum(A v) const { return warp_sum(v); }
  template <typename A> __device__ Lse<A> lse(Lse<A> v) const {
    for (int offset = 16; offset > 0; offset >>= 1) {
      Lse<A> other{__shfl_xor_sync(GPUNN_FULL_MASK, v.m, offset),
                   __shfl_xor_sync(GPUNN_FULL_MASK, v.s, offset)};
      v = lse_merge(v, other);
    }
    return v;
  }
};

// The threads that share a row: the whole block.
struct BlockRow {
  __device__ int rank() const { return threadIdx.x; }
  __device__ int size() const { return blockDim.x; }
  __device__ long long first() const { return blockIdx.x; }
  __device__ long long stride() const { return gridDim.x; }
  template <typename A> __device__ A sum(A v) const {
    __shared__ A scratch[GPUNN_MAX_WARPS];
    return block_sum(v, scratch);
  }
  template <typename A> __device__ Lse<A> lse(Lse<A> v) const {
    __shared__ A ms[GPUNN_MAX_WARPS], ss[GPUNN_MAX_WARPS];
    v = WarpRow().lse(v);
    if ((threadIdx.x & 31) == 0) {
      ms[threadIdx.x >> 5] = v.m;
      ss[threadIdx.x >> 5] = v.s;
    }
    __syncthreads();
    Lse<A> total{ms[0], ss[0]};  // every thread merges the warps in the same order
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w)
      total = lse_merge(total, {ms[w], ss[w]});
    __syncthreads();  // ms / ss are free again
    return total;
  }
};

template <bool BLOCK_ROWS> struct RowGroup { using type = WarpRow; };
template <> struct RowGroup<true> { using type = BlockRow; };

// Pass 1 of a row: online log-sum-exp of z_j = x_j / temperature over the group.
template <typename G, typename T, typename A>
__device__ __forceinline__ Lse<A> row_lse(G g, const T* x, long long c, A temperature) {
  Lse<A> v{neg_inf<A>(), A(0)};
  for (long long j = g.rank(); j < c; j += g.size())
    v = lse_add(v, load(x[j]) / temperature);
  return g.lse(v);
}

template <typename G, typename T>
__device__ __forceinline__ void fill_row(G g, T* d, long long c,
                                         typename acc<T>::type value) {
  for (long long j = g.rank(); j < c; j += g.size()) d[j] = store<T>(value);
}

}  // namespace gpunn

template <typename T, typename L>
__global__ void ce_stats(const L* __restrict__ labels, const T* __restrict__ cw,
                         long long n, long long c, long long ignore, int flags,
                         gpunn::acc_t<T>* __restrict__ stats) {
  using A = gpunn::acc_t<T>;
  __shared__ A scratch[GPUNN_MAX_WARPS];
  const bool has_w = flags & gpunn::HAS_W;
  A weight = A(0), kept = A(0), total = A(0);
  for (long long i = threadIdx.x; i < n; i += blockDim.x) {
    const long long y = (long long)labels[i];
    if ((flags & gpunn::HAS_IGNORE) && y == ignore) continue;
    kept += A(1);
    const bool valid = y >= 0 && y < c;
    weight += !valid ? gpunn::nan_<A>() : (has_w ? gpunn::load(cw[y]) : A(1));
  }
  if (has_w)
    for (long long j = threadIdx.x; j < c; j += blockDim.x)
      total += gpunn::load(cw[j]);
  weight = gpunn::block_sum(weight, scratch);
  kept = gpunn::block_sum(kept, scratch);
  total = gpunn::block_sum(total, scratch);
  if (threadIdx.x == 0) {
    stats[0] = A(1) / (kept == A(0) ? A(1) : weight);
    stats[1] = has_w ? total : A(c);
  }
}

template <typename T, typename L, bool BLOCK_ROWS>
__global__ void ce_labels(const T* __restrict__ logits, const L* __restrict__ labels,
                          const T* __restrict__ sw, const T* __restrict__ cw,
                          const gpunn::acc_t<T>* __restrict__ stats,
                          T* __restrict__ dlogits,
                          gpunn::acc_t<T>* __restrict__ row_loss,
                          long long n, long long c, gpunn::acc_t<T> temperature,
                          gpunn::acc_t<T> one_minus_ls, gpunn::acc_t<T> ls_over_c,
                          gpunn::acc_t<T> inv_n, long long ignore, int flags) {
  using A = gpunn::acc_t<T>;
  typename gpunn::RowGroup<BLOCK_ROWS>::type g;
  const bool has_w = flags & gpunn::HAS_W, smooth = flags & gpunn::SMOOTH;
  const bool from_stats = flags & (gpunn::HAS_W | gpunn::HAS_IGNORE);
  for (long long i = g.first(); i < n; i += g.stride()) {
    const T* x = logits + i * c;
    T* d = dlogits + i * c;
    const long long y = (long long)labels[i];
    if ((flags & gpunn::HAS_IGNORE) && y == ignore) {
      gpunn::fill_row(g, d, c, A(0));
      if (g.rank() == 0) row_loss[i] = A(0);
      continue;
    }
    if (y < 0 || y >= c) {
      gpunn::fill_row(g, d, c, gpunn::nan_<A>());
      if (g.rank() == 0) row_loss[i] = gpunn::nan_<A>();
      continue;
    }
    const gpunn::Lse<A> lse = gpunn::row_lse(g, x, c, temperature);
    A coef = from_stats ? stats[0] : inv_n;
    if (flags & gpunn::HAS_SW) coef = gpunn::load(sw[i]) * coef;
    const A hard = coef * (has_w ? gpunn::load(cw[y]) : A(1)) * one_minus_ls;
    const A soft = smooth ? coef * ls_over_c : A(0);
    const A total = from_stats ? stats[1] : A(c);
    const A scale = (smooth ? hard + soft * total : hard) / lse.s;
    A spread = A(0);  // sum_j w_j shifted_j, for the smoothing term
    for (long long j = g.rank(); j < c; j += g.size()) {
      const A shifted = gpunn::load(x[j]) / temperature - lse.m;
      const A w = has_w ? gpunn::load(cw[j]) : A(1);
      A dj = gpunn::exp_(shifted) * scale;
      if (j == y) dj -= hard;
      if (smooth) {
        dj -= soft * w;
        spread += shifted * w;
      }
      d[j] = gpunn::store<T>(dj / temperature);
    }
    if (smooth) spread = g.sum(spread);
    if (g.rank() == 0) {
      const A log_s = gpunn::log_(lse.s);
      A term = (log_s - (gpunn::load(x[y]) / temperature - lse.m)) * hard;
      if (smooth) term += soft * (total * log_s - spread);
      row_loss[i] = term;
    }
  }
}

template <typename T, bool BLOCK_ROWS>
__global__ void ce_rows(const T* __restrict__ logits, const T* __restrict__ targets,
                        const T* __restrict__ sw, const T* __restrict__ cw,
                        T* __restrict__ dlogits, gpunn::acc_t<T>* __restrict__ row_loss,
                        long long n, long long c, gpunn::acc_t<T> temperature,
                        gpunn::acc_t<T> one_minus_ls, gpunn::acc_t<T> ls_over_c,
                        gpunn::acc_t<T> inv_n, gpunn::acc_t<T> n_f, int flags) {
  using A = gpunn::acc_t<T>;
  typename gpunn::RowGroup<BLOCK_ROWS>::type g;
  const bool has_w = flags & gpunn::HAS_W, smooth = flags & gpunn::SMOOTH;
  for (long long i = g.first(); i < n; i += g.stride()) {
    const T* x = logits + i * c;
    const T* t = targets + i * c;
    T* d = dlogits + i * c;
    const A coef = (flags & gpunn::HAS_SW) ? gpunn::load(sw[i]) / n_f : inv_n;
    // q_j = ((1 - ls) t_j + ls / C) coef w_j: the weighted target mass
    auto q = [&](long long j) {
      A tq = gpunn::load(t[j]);
      if (smooth) tq = tq * one_minus_ls + ls_over_c;
      tq = tq * coef;
      return has_w ? tq * gpunn::load(cw[j]) : tq;
    };
    gpunn::Lse<A> v{gpunn::neg_inf<A>(), A(0)};
    A mass = A(0);
    for (long long j = g.rank(); j < c; j += g.size()) {
      v = gpunn::lse_add(v, gpunn::load(x[j]) / temperature);
      mass += q(j);
    }
    const gpunn::Lse<A> lse = g.lse(v);
    const A log_s = gpunn::log_(lse.s), scale = g.sum(mass) / lse.s;
    A term = A(0);
    for (long long j = g.rank(); j < c; j += g.size()) {
      const A shifted = gpunn::load(x[j]) / temperature - lse.m, qj = q(j);
      // a -inf logit without target mass adds 0, not 0 * inf
      if (qj != A(0)) term += qj * (log_s - shifted);
      d[j] = gpunn::store<T>((gpunn::exp_(shifted) * scale - qj) / temperature);
    }
    term = g.sum(term);
    if (g.rank() == 0) row_loss[i] = term;
  }
}

template <typename T>
__global__ void bce(const T* __restrict__ logits, const T* __restrict__ targets,
                    const T* __restrict__ sw, const T* __restrict__ pw,
                    T* __restrict__ dlogits, gpunn::acc_t<T>* __restrict__ partials,
                    long long n, long long k, gpunn::acc_t<T> one_minus_ls,
                    gpunn::acc_t<T> half_ls, gpunn::acc_t<T> inv_size,
                    long long pw_size, int flags) {
  using A = gpunn::acc_t<T>;
  __shared__ A scratch[GPUNN_MAX_WARPS];
  A sum = A(0);
  GPUNN_GRID_STRIDE(e, n * k) {
    const A z = gpunn::load(logits[e]);
    A t = gpunn::load(targets[e]);
    if (flags & gpunn::SMOOTH) t = t * one_minus_ls + half_ls;
    const A ez = gpunn::exp_(-gpunn::abs_(z));
    const A softplus = (z > A(0) ? z : A(0)) + gpunn::log1p_(ez);
    const A sigmoid = z >= A(0) ? A(1) / (A(1) + ez) : ez / (A(1) + ez);
    A value, grad;
    if (flags & gpunn::HAS_W) {
      const A pt = gpunn::load(pw[pw_size == 1 ? 0 : e % k]) * t;
      const A scale = A(1) + pt - t;
      value = scale * softplus - pt * z;
      grad = scale * sigmoid - pt;
    } else {
      value = softplus - z * t;
      grad = sigmoid - t;
    }
    if (flags & gpunn::HAS_SW) {
      const A w = gpunn::load(sw[e / k]) * inv_size;
      sum += value * w;
      grad = grad * w;
    } else {
      sum += value;
      grad = grad * inv_size;
    }
    dlogits[e] = gpunn::store<T>(grad);
  }
  sum = gpunn::block_sum(sum, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

template <typename T>
__global__ void sum_terms(const gpunn::acc_t<T>* __restrict__ terms, long long m,
                          gpunn::acc_t<T> scale, T* __restrict__ out) {
  using A = gpunn::acc_t<T>;
  __shared__ A scratch[GPUNN_MAX_WARPS];
  A sum = A(0);
  for (long long i = threadIdx.x; i < m; i += blockDim.x) sum += terms[i];
  sum = gpunn::block_sum(sum, scratch);
  if (threadIdx.x == 0) out[0] = gpunn::store<T>(sum * scale);
}

GPUNN_EXPORT(ce_stats<float, int>)
GPUNN_EXPORT(ce_stats<float, long long>)
GPUNN_EXPORT(ce_stats<double, int>)
GPUNN_EXPORT(ce_stats<double, long long>)
GPUNN_EXPORT(ce_labels<float, int, false>)
GPUNN_EXPORT(ce_labels<float, int, true>)
GPUNN_EXPORT(ce_labels<float, long long, false>)
GPUNN_EXPORT(ce_labels<float, long long, true>)
GPUNN_EXPORT(ce_labels<double, int, false>)
GPUNN_EXPORT(ce_labels<double, int, true>)
GPUNN_EXPORT(ce_labels<double, long long, false>)
GPUNN_EXPORT(ce_labels<double, long long, true>)
GPUNN_EXPORT(ce_rows<float, false>)
GPUNN_EXPORT(ce_rows<float, true>)
GPUNN_EXPORT(ce_rows<double, false>)
GPUNN_EXPORT(ce_rows<double, true>)
GPUNN_EXPORT(bce<float>)
GPUNN_EXPORT(bce<double>)
GPUNN_EXPORT(sum_terms<float>)
GPUNN_EXPORT(sum_terms<double>)
GPUNN_EXPORT_HALF(ce_stats<__half, int>)
GPUNN_EXPORT_HALF(ce_stats<__half, long long>)
GPUNN_EXPORT_HALF(ce_labels<__half, int, false>)
GPUNN_EXPORT_HALF(ce_labels<__half, int, true>)
GPUNN_EXPORT_HALF(ce_labels<__half, long long, false>)
GPUNN_EXPORT_HALF(ce_labels<__half, long long, true>)
GPUNN_EXPORT_HALF(ce_rows<__half, false>)
GPUNN_EXPORT_HALF(ce_rows<__half, true>)
GPUNN_EXPORT_HALF(bce<__half>)
GPUNN_EXPORT_HALF(sum_terms<__half>)
GPUNN_EXPORT_HALF(ce_stats<__nv_bfloat16, int>)
GPUNN_EXPORT_HALF(ce_stats<__nv_bfloat16, long long>)
GPUNN_EXPORT_HALF(ce_labels<__nv_bfloat16, int, false>)
GPUNN_EXPORT_HALF(ce_labels<__nv_bfloat16, int, true>)
GPUNN_EXPORT_HALF(ce_labels<__nv_bfloat16, long long, false>)
GPUNN_EXPORT_HALF(ce_labels<__nv_bfloat16, long long, true>)
GPUNN_EXPORT_HALF(ce_rows<__nv_bfloat16, false>)
GPUNN_EXPORT_HALF(ce_rows<__nv_bfloat16, true>)
GPUNN_EXPORT_HALF(bce<__nv_bfloat16>)
GPUNN_EXPORT_HALF(sum_terms<__nv_bfloat16>)
