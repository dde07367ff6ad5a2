// Batch normalization over the columns of a (rows, cols) matrix: training forward
// (batch mean, biased variance, normalize, affine, running statistics), eval forward
// and backward, as the NumPy reference (ops_layers.py). Column statistics are summed
// in double, in a fixed order (no atomics), so the same input gives the same bits.
// T is the data's type (x, y, dy, dx) and S the statistics' and parameters' (mean,
// inv_std, gamma, beta, the running statistics, x_hat, the column sums): S = T for
// float and double; for the 16-bit types (mixed precision) S = float, so every
// statistic is float32 and only the outputs y and dx are rounded to T.
//
// Launch contract (common.cuh): 1-D grid of 1-D blocks, block a multiple of 32.
// Column passes (grid = chunks * tile-groups from the launcher, a multiple of chunks):
//   block b takes row chunk b % chunks and the 32-column tiles b / chunks, b / chunks +
//   gridDim / chunks, ...; lane = column in the tile, warp w sums the rows chunk *
//   warps + w, + chunks * warps, ... in order, then warp 0 adds the warps in order and
//   writes partials[plane][chunk][col] (double, planes of chunks * cols).
//   bn_stats_partials<T>(x, partials, rows, cols, chunks, pass): pass 0 writes plane 0
//     = sums of x; pass 1 (after pass 0) writes plane 1 = sums of (x - mean)^2, with
//     the double mean = plane-0 total / rows (two passes: no E[x^2] - mean^2
//     cancellation for a large mean).
//   bn_backward_partials<T, S>(dy, x_hat, partials, rows, cols, chunks): plane 0 =
//     sums of dy, plane 1 = sums of dy * x_hat.
// Per column (grid-stride over cols; any grid):
//   bn_stats_finalize<S>(partials, chunks, rows, cols, eps, mean, inv_std,
//     running_mean, running_var, keep, momentum, unbiased): from the plane totals
//     (added over chunks in order) the double mean as two S words, mean[c] = S(mean)
//     and mean[cols + c] = S(mean - mean[c]), and inv_std = S(1 / sqrt(var + eps));
//     running = running * keep + momentum * batch (S arithmetic, keep = 1 -
//     momentum, the batch mean mean[c], the variance S(var) * unbiased, unbiased =
//     n / (n - 1)).
//   bn_backward_finalize<S>(partials, chunks, cols, sums, dgamma, dbeta, has_dgamma,
//     has_dbeta): sums[0:cols] = S(sum dy), sums[cols:] = S(sum dy * x_hat), copied
//     to dbeta / dgamma when present.
// Elementwise (grid-stride over n = rows * cols; column = i % cols; x and dy read
// as S):
//   bn_normalize<T, S>(x, mean, inv_std, gamma, beta, x_hat, y, n, cols, affine):
//     x_hat = ((x - mean[c]) - mean[cols + c]) * inv_std (the first difference is
//     exact near the mean, so a float32 x with a large mean keeps its precision);
//     y = T(x_hat * gamma + beta) when affine, else T(x_hat) (y may be x_hat when
//     T = S).
//   bn_eval<T, S>(x, mean, var, gamma, beta, y, n, cols, eps, has_gamma, has_beta):
//     y = T((x - mean) * (1 / sqrt(var + eps) [* gamma]) [+ beta]).
//   bn_backward_dx<T, S>(dy, x_hat, inv_std, gamma, sums, dx, n, cols, neg_inv_n,
//     has_gamma): dx = T(((x_hat * S2 + S1) * neg_inv_n + dy) * ([gamma *] inv_std)).
// Args: arrays contiguous; absent optional arrays are any valid pointer with their
// flag (int) 0; eps double in the stats, S in eval; keep, momentum, unbiased and
// neg_inv_n in S, rounded by the launcher. Sizes long long.
// Instantiate: <float, float>, <double, double>; with GPUNN_HALF <__half, float> and
// <__nv_bfloat16, float> (the stats-only kernels take S alone).
#include "common.cuh"

namespace {

struct Pair {
  double a, b;
  __device__ __forceinline__ Pair& operator+=(const Pair& o) {
    a += o.a;
    b += o.b;
    return *this;
  }
};

__device__ __forceinline__ float sqrt_(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_(double x) { return sqrt(x); }

// Sum over chunks, in order, of column col of the plane starting at p.
__device__ __forceinline__ double column_total(const double* p, long long chunks,
                                               long long cols, long long col) {
  double total = 0.0;
  for (long long k = 0; k < chunks; ++k) total += p[k * cols + col];
  return total;
}

// The planes a column pass writes: plane 0 gets .a, plane 1 (NS == 2) .b.
template <int NS> struct PlaneWriter {
  double* partials;
  long long chunks, cols;
  __device__ __forceinline__ void operator()(long long chunk, long long col,
                                             const Pair& total) const {
    partials[chunk * cols + col] = total.a;
    if (NS == 2) partials[(chunks + chunk) * cols + col] = total.b;
  }
};

// The column pass of the top comment (gpunn::column_partials): column(col) -> a
// functor i -> Pair for element i of that column; NS planes (1: .a only) are written.
template <int NS, typename ColumnF>
__device__ __forceinline__ void column_partials(long long rows, long long cols,
                                                long long chunks, double* partials,
                                                ColumnF column) {
  gpunn::column_partials<Pair>(rows, cols, chunks, column,
                               PlaneWriter<NS>{partials, chunks, cols});
}

}  // namespace

template <typename T>
__global__ void bn_stats_partials(const T* __restrict__ x, double* partials,
                                  long long rows, long long cols, long long chunks,
                                  int pass) {
  if (pass == 0) {
    column_partials<1>(rows, cols, chunks, partials, [&](long long) {
      return [=](long long i) { return Pair{(double)gpunn::load(x[i]), 0.0}; };
    });
    return;
  }
  column_partials<1>(rows, cols, chunks, partials + chunks * cols, [&](long long col) {
    const double mean = column_total(partials, chunks, cols, col) / rows;
    return [=](long long i) {
      const double d = (double)gpunn::load(x[i]) - mean;
      return Pair{d * d, 0.0};
    };
  });
}

template <typename S>
__global__ void bn_stats_finalize(const double* __restrict__ partials, long long chunks,
                                  long long rows, long long cols, double eps,
                                  S* __restrict__ mean, S* __restrict__ inv_std,
                                  S* __restrict__ running_mean,
                                  S* __restrict__ running_var, S keep, S momentum,
                                  S unbiased) {
  GPUNN_GRID_STRIDE(c, cols) {
    const double mean_d = column_total(partials, chunks, cols, c) / rows;
    const double var = column_total(partials + chunks * cols, chunks, cols, c) / rows;
    const S m = (S)mean_d;
    mean[c] = m;
    mean[cols + c] = (S)(mean_d - (double)m);
    inv_std[c] = (S)(1.0 / sqrt(var + eps));
    const S rm = running_mean[c] * keep, bm = momentum * m;
    running_mean[c] = rm + bm;
    const S rv = running_var[c] * keep, bv = momentum * ((S)var * unbiased);
    running_var[c] = rv + bv;
  }
}

template <typename T, typename S>
__global__ void bn_normalize(const T* __restrict__ x, const S* __restrict__ mean,
                             const S* __restrict__ inv_std, const S* __restrict__ gamma,
                             const S* __restrict__ beta, S* x_hat, T* y, long long n,
                             long long cols, int affine) {
  GPUNN_GRID_STRIDE(i, n) {
    const long long c = i % cols;
    const S d = (S)gpunn::load(x[i]) - mean[c], e = d - mean[cols + c];
    const S h = e * inv_std[c];
    x_hat[i] = h;
    if (affine) {
      const S g = h * gamma[c];
      y[i] = gpunn::store<T>(g + beta[c]);
    } else {
      y[i] = gpunn::store<T>(h);
    }
  }
}

template <typename T, typename S>
__global__ void bn_eval(const T* __restrict__ x, const S* __restrict__ mean,
                        const S* __restrict__ var, const S* __restrict__ gamma,
                        const S* __restrict__ beta, T* __restrict__ y, long long n,
                        long long cols, S eps, int has_gamma, int has_beta) {
  GPUNN_GRID_STRIDE(i, n) {
    const long long c = i % cols;
    const S v = var[c] + eps, r = sqrt_(v);
    S scale = S(1) / r;
    if (has_gamma) scale = scale * gamma[c];
    const S d = (S)gpunn::load(x[i]) - mean[c];
    S out = d * scale;
    if (has_beta) out = out + beta[c];
    y[i] = gpunn::store<T>(out);
  }
}

template <typename T, typename S>
__global__ void bn_backward_partials(const T* __restrict__ dy,
                                     const S* __restrict__ x_hat, double* partials,
                                     long long rows, long long cols, long long chunks) {
  column_partials<2>(rows, cols, chunks, partials, [&](long long) {
    return [=](long long i) {
      const double g = (double)gpunn::load(dy[i]);
      return Pair{g, g * (double)x_hat[i]};
    };
  });
}

template <typename S>
__global__ void bn_backward_finalize(const double* __restrict__ partials,
                                     long long chunks, long long cols,
                                     S* __restrict__ sums, S* __restrict__ dgamma,
                                     S* __restrict__ dbeta, int has_dgamma,
                                     int has_dbeta) {
  GPUNN_GRID_STRIDE(c, cols) {
    const S s1 = (S)column_total(partials, chunks, cols, c);
    const S s2 = (S)column_total(partials + chunks * cols, chunks, cols, c);
    sums[c] = s1;
    sums[cols + c] = s2;
    if (has_dbeta) dbeta[c] = s1;
    if (has_dgamma) dgamma[c] = s2;
  }
}

template <typename T, typename S>
__global__ void bn_backward_dx(const T* __restrict__ dy, const S* __restrict__ x_hat,
                               const S* __restrict__ inv_std,
                               const S* __restrict__ gamma, const S* __restrict__ sums,
                               T* __restrict__ dx, long long n, long long cols,
                               S neg_inv_n, int has_gamma) {
  GPUNN_GRID_STRIDE(i, n) {
    const long long c = i % cols;
    const S a = x_hat[i] * sums[cols + c], b = a + sums[c], e = b * neg_inv_n;
    const S f = e + (S)gpunn::load(dy[i]);
    const S s = has_gamma ? gamma[c] * inv_std[c] : inv_std[c];
    dx[i] = gpunn::store<T>(f * s);
  }
}

GPUNN_EXPORT(bn_stats_partials<float>)
GPUNN_EXPORT(bn_stats_partials<double>)
GPUNN_EXPORT(bn_stats_finalize<float>)
GPUNN_EXPORT(bn_stats_finalize<double>)
GPUNN_EXPORT(bn_normalize<float, float>)
GPUNN_EXPORT(bn_normalize<double, double>)
GPUNN_EXPORT(bn_eval<float, float>)
GPUNN_EXPORT(bn_eval<double, double>)
GPUNN_EXPORT(bn_backward_partials<float, float>)
GPUNN_EXPORT(bn_backward_partials<double, double>)
GPUNN_EXPORT(bn_backward_finalize<float>)
GPUNN_EXPORT(bn_backward_finalize<double>)
GPUNN_EXPORT(bn_backward_dx<float, float>)
GPUNN_EXPORT(bn_backward_dx<double, double>)
GPUNN_EXPORT_HALF(bn_stats_partials<__half>)
GPUNN_EXPORT_HALF(bn_stats_partials<__nv_bfloat16>)
GPUNN_EXPORT_HALF(bn_normalize<__half, float>)
GPUNN_EXPORT_HALF(bn_normalize<__nv_bfloat16, float>)
GPUNN_EXPORT_HALF(bn_eval<__half, float>)
GPUNN_EXPORT_HALF(bn_eval<__nv_bfloat16, float>)
GPUNN_EXPORT_HALF(bn_backward_partials<__half, float>)
GPUNN_EXPORT_HALF(bn_backward_partials<__nv_bfloat16, float>)
GPUNN_EXPORT_HALF(bn_backward_dx<__half, float>)
GPUNN_EXPORT_HALF(bn_backward_dx<__nv_bfloat16, float>)
