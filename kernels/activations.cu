// Activation kernels: forward and derivative in one pass each, Swish with a device
// beta, PReLU, and the activations fused with Dense's bias add and bias gradient.
//
// Launch contract (common.cuh): 1-D grid of 1-D blocks, block a multiple of 32.
// A is the accumulate type (float for __half and __nv_bfloat16); p is the activation's
// option (LeakyReLU's negative_slope, ELU's alpha; unused otherwise); every array is
// contiguous. Parameters (Swish's beta, PReLU's slopes) and their gradients are A:
// with 16-bit data (mixed precision) they live in the float32 arena. The formulas, their order and the values at kinks are those of the
// reference ops in gpunn/backends/ops_layers.py and ops_fused.py.
//
// Elementwise (any grid, grid-stride over n elements, n may be 0):
//   act_forward<T, ACT>(x, y, n, p): y = act(x).
//   act_backward<T, ACT>(dy, saved, dx, n, p): dx = dy * act'(.), `saved` the output y
//     (ReLU, LeakyReLU, ELU, Sigmoid, Tanh) or the input x (SiLU, GELU).
//   swish_forward<T>(x, y, n, beta): y = x * sigmoid(beta[0] * x).
//   prelu_forward<T>(x, w, y, n, cols, per_unit): y = x > 0 ? x : x * w[col or 0].
//   dense_act_forward<T, ACT>(z, b, y, n, cols, p, has_bias): z = x @ w (rows, cols);
//     y = act(z + b[col]), the sum rounded to T; y may be z (in place), except for the
//     activations whose backward reads the input (SiLU, GELU), which also store z + b
//     back into z.
// With per-block partial sums (partials[blockIdx.x], A; grid from the launcher):
//   swish_backward<T>(dy, x, dx, n, beta, partials, want_dbeta): dx = dy * (s + beta *
//     x * s * (1 - s)), s = sigmoid(beta * x); partials of dy * x * x * s * (1 - s).
// Column passes over a (rows, cols) matrix, the grid a multiple of `chunks`: block b
//   takes row chunk b % chunks and column tiles of 32 from b / chunks in steps of
//   grid / chunks; each warp walks rows warp, warp + warps * chunks, ... of its chunk;
//   partials[chunk * cols + col] (A) gets the chunk's column sum in a fixed order:
//   dense_act_backward<T, ACT>(dy, saved, dz, partials, rows, cols, chunks, p):
//     dz = dy * act'(.) (not written for IDENTITY: dz is dy), column partials of dz.
//   prelu_backward<T>(dy, x, w, dx, partials, rows, cols, chunks, per_unit, need_dx):
//     dx = x > 0 ? dy : dy * w (when need_dx), column partials of dy * min(x, 0).
// Fixed-order finalize (deterministic: no atomics, the same input gives the same bits):
//   column_sums<T>(partials, chunks, cols, out): out[c] = sum over chunks, any grid.
//   sum_partials<T>(partials, n, out): out[0] = sum of n partials; ONE block.
#include "common.cuh"

namespace gpunn {

enum Act { RELU = 0, LEAKY_RELU = 1, ELU = 2, SIGMOID = 3, TANH = 4, SILU = 5,
           GELU = 6, GELU_TANH = 7, IDENTITY = 8 };

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float expm1_(float x) { return expm1f(x); }
__device__ __forceinline__ double expm1_(double x) { return expm1(x); }
__device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_(double x) { return tanh(x); }
__device__ __forceinline__ float erf_(float x) { return erff(x); }
__device__ __forceinline__ double erf_(double x) { return erf(x); }
__device__ __forceinline__ float abs_(float x) { return fabsf(x); }
__device__ __forceinline__ double abs_(double x) { return fabs(x); }

// 1 / (1 + exp(-x)) without overflow: the reference's two branches.
template <typename A> __device__ __forceinline__ A sigmoid(A x) {
  A e = exp_(-abs_(x));
  return x >= A(0) ? A(1) / (A(1) + e) : e / (A(1) + e);
}

template <typename A> __device__ __forceinline__ A tanh_inner(A x) {
  const A k = A(0.7978845608028654), cubic = A(0.044715);  // sqrt(2 / pi)
  return k * x * (A(1) + cubic * x * x);
}

// np.minimum(x, 0): NaN stays NaN.
template <typename A> __device__ __forceinline__ A min0(A x) {
  return (x < A(0) || x != x) ? x : A(0);
}

template <int ACT, typename A> __device__ __forceinline__ A forward(A x, A p) {
  switch (ACT) {
    case RELU: return x > A(0) ? x : (x != x ? x : A(0));
    case LEAKY_RELU: return x > A(0) ? x : x * p;
    case ELU: return x > A(0) ? x : p * expm1_(min0(x));
    case SIGMOID: return sigmoid(x);
    case TANH: return tanh_(x);
    case SILU: return x * sigmoid(x);
    case GELU: return A(0.5) * x * (A(1) + erf_(x * A(0.7071067811865476)));
    case GELU_TANH: return A(0.5) * x * (A(1) + tanh_(tanh_inner(x)));
    default: return x;  // IDENTITY
  }
}

// dy * act'(.) from the saved y or x.
template <int ACT, typename A> __device__ __forceinline__ A backward(A dy, A s, A p) {
  switch (ACT) {
    case RELU: return dy * (s > A(0) ? A(1) : A(0));
    case LEAKY_RELU: return s > A(0) ? dy : dy * p;
    case ELU: return s > A(0) ? dy : dy * (s + p);
    case SIGMOID: return dy * s * (A(1) - s);
    case TANH: return dy * (A(1) - s * s);
    case SILU: {
      A sg = sigmoid(s);
      return dy * sg * (A(1) + s * (A(1) - sg));
    }
    case GELU: {
      A cdf = A(0.5) * (A(1) + erf_(s * A(0.7071067811865476)));
      return dy * (cdf + s * A(0.3989422804014327) * exp_(A(-0.5) * s * s));
    }
    case GELU_TANH: {
      A t = tanh_(tanh_inner(s));
      A dinner = A(0.7978845608028654) * (A(1) + A(3) * A(0.044715) * s * s);
      return dy * (A(0.5) * (A(1) + t) + A(0.5) * s * (A(1) - t * t) * dinner);
    }
    default: return dy;  // IDENTITY
  }
}

// x rounded to T and back: each stored intermediate of the reference, in A.
template <typename T> __device__ __forceinline__ typename acc<T>::type round_(
    typename acc<T>::type x) {
  return load(store<T>(x));
}

}  // namespace gpunn

template <typename T> using acc_t = typename gpunn::acc<T>::type;

template <typename T, int ACT>
__global__ void act_forward(const T* __restrict__ x, T* __restrict__ y, long long n,
                            acc_t<T> p) {
  GPUNN_GRID_STRIDE(i, n) {
    y[i] = gpunn::store<T>(gpunn::forward<ACT>(gpunn::load(x[i]), p));
  }
}

template <typename T, int ACT>
__global__ void act_backward(const T* __restrict__ dy, const T* __restrict__ saved,
                             T* __restrict__ dx, long long n, acc_t<T> p) {
  GPUNN_GRID_STRIDE(i, n) {
    dx[i] = gpunn::store<T>(
        gpunn::backward<ACT>(gpunn::load(dy[i]), gpunn::load(saved[i]), p));
  }
}

template <typename T>
__global__ void swish_forward(const T* __restrict__ x, T* __restrict__ y, long long n,
                              const acc_t<T>* __restrict__ beta) {
  const acc_t<T> b = gpunn::load(beta[0]);
  GPUNN_GRID_STRIDE(i, n) {
    const acc_t<T> v = gpunn::load(x[i]);
    const acc_t<T> s = gpunn::sigmoid(b * v);
    y[i] = gpunn::store<T>(v * s);
  }
}

template <typename T>
__global__ void swish_backward(const T* __restrict__ dy, const T* __restrict__ x,
                               T* __restrict__ dx, long long n,
                               const acc_t<T>* __restrict__ beta, acc_t<T>* partials,
                               int want_dbeta) {
  using A = acc_t<T>;
  __shared__ A scratch[GPUNN_MAX_WARPS];
  const A b = gpunn::load(beta[0]);
  A sum = A(0);
  GPUNN_GRID_STRIDE(i, n) {
    const A v = gpunn::load(x[i]), d = gpunn::load(dy[i]);
    const A s = gpunn::sigmoid(b * v), t = v * s * (A(1) - s);
    sum += d * v * t;
    dx[i] = gpunn::store<T>(d * (s + b * t));
  }
  if (want_dbeta) {
    sum = gpunn::block_sum(sum, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
  }
}

template <typename T>
__global__ void prelu_forward(const T* __restrict__ x, const acc_t<T>* __restrict__ w,
                              T* __restrict__ y, long long n, long long cols,
                              int per_unit) {
  GPUNN_GRID_STRIDE(i, n) {
    const acc_t<T> v = gpunn::load(x[i]);
    const acc_t<T> slope = gpunn::load(w[per_unit ? i % cols : 0]);
    y[i] = v > acc_t<T>(0) ? x[i] : gpunn::store<T>(v * slope);
  }
}

template <typename T>
__global__ void prelu_backward(const T* __restrict__ dy, const T* __restrict__ x,
                               const acc_t<T>* __restrict__ w, T* __restrict__ dx,
                               acc_t<T>* partials, long long rows, long long cols,
                               long long chunks, int per_unit, int need_dx) {
  using A = acc_t<T>;
  gpunn::column_partials<A>(
      rows, cols, chunks,
      [&](long long col) {
        const A slope = gpunn::load(w[per_unit ? col : 0]);
        return [&, slope](long long i) {
          const A v = gpunn::load(x[i]), d = gpunn::load(dy[i]);
          if (need_dx) dx[i] = v > A(0) ? dy[i] : gpunn::store<T>(d * slope);
          return d * gpunn::min0(v);
        };
      },
      gpunn::ColumnWriter<A>{partials, cols});
}

template <typename T, int ACT>
__global__ void dense_act_forward(T* z, const T* __restrict__ b, T* y, long long n,
                                  long long cols, acc_t<T> p, int has_bias) {
  constexpr bool keeps_z = ACT == gpunn::SILU || ACT == gpunn::GELU ||
                           ACT == gpunn::GELU_TANH;
  GPUNN_GRID_STRIDE(i, n) {
    acc_t<T> v = gpunn::load(z[i]);
    if (has_bias) v = gpunn::round_<T>(v + gpunn::load(b[i % cols]));
    if (keeps_z) z[i] = gpunn::store<T>(v);
    y[i] = gpunn::store<T>(gpunn::forward<ACT>(v, p));
  }
}

template <typename T, int ACT>
__global__ void dense_act_backward(const T* dy, const T* __restrict__ saved, T* dz,
                                   acc_t<T>* partials, long long rows, long long cols,
                                   long long chunks, acc_t<T> p) {
  using A = acc_t<T>;
  gpunn::column_partials<A>(
      rows, cols, chunks,
      [&](long long) {
        return [&](long long i) {
          const A d = gpunn::round_<T>(
              gpunn::backward<ACT>(gpunn::load(dy[i]), gpunn::load(saved[i]), p));
          if (ACT != gpunn::IDENTITY) dz[i] = gpunn::store<T>(d);
          return d;
        };
      },
      gpunn::ColumnWriter<A>{partials, cols});
}

template <typename T>
__global__ void column_sums(const acc_t<T>* __restrict__ partials, long long chunks,
                            long long cols, T* __restrict__ out) {
  GPUNN_GRID_STRIDE(c, cols) {
    acc_t<T> total = acc_t<T>(0);
    for (long long k = 0; k < chunks; ++k) total += partials[k * cols + c];
    out[c] = gpunn::store<T>(total);
  }
}

template <typename T>
__global__ void sum_partials(const acc_t<T>* __restrict__ partials, long long n,
                             T* __restrict__ out) {
  using A = acc_t<T>;
  __shared__ A scratch[GPUNN_MAX_WARPS];
  A sum = A(0);
  for (long long i = threadIdx.x; i < n; i += blockDim.x) sum += partials[i];
  sum = gpunn::block_sum(sum, scratch);
  if (threadIdx.x == 0) out[0] = gpunn::store<T>(sum);
}

GPUNN_EXPORT(act_forward<float, 0>)
GPUNN_EXPORT(act_forward<float, 1>)
GPUNN_EXPORT(act_forward<float, 2>)
GPUNN_EXPORT(act_forward<float, 3>)
GPUNN_EXPORT(act_forward<float, 4>)
GPUNN_EXPORT(act_forward<float, 5>)
GPUNN_EXPORT(act_forward<float, 6>)
GPUNN_EXPORT(act_forward<float, 7>)
GPUNN_EXPORT(act_backward<float, 0>)
GPUNN_EXPORT(act_backward<float, 1>)
GPUNN_EXPORT(act_backward<float, 2>)
GPUNN_EXPORT(act_backward<float, 3>)
GPUNN_EXPORT(act_backward<float, 4>)
GPUNN_EXPORT(act_backward<float, 5>)
GPUNN_EXPORT(act_backward<float, 6>)
GPUNN_EXPORT(act_backward<float, 7>)
GPUNN_EXPORT(dense_act_forward<float, 0>)
GPUNN_EXPORT(dense_act_forward<float, 1>)
GPUNN_EXPORT(dense_act_forward<float, 2>)
GPUNN_EXPORT(dense_act_forward<float, 3>)
GPUNN_EXPORT(dense_act_forward<float, 4>)
GPUNN_EXPORT(dense_act_forward<float, 5>)
GPUNN_EXPORT(dense_act_forward<float, 6>)
GPUNN_EXPORT(dense_act_forward<float, 7>)
GPUNN_EXPORT(dense_act_forward<float, 8>)
GPUNN_EXPORT(dense_act_backward<float, 0>)
GPUNN_EXPORT(dense_act_backward<float, 1>)
GPUNN_EXPORT(dense_act_backward<float, 2>)
GPUNN_EXPORT(dense_act_backward<float, 3>)
GPUNN_EXPORT(dense_act_backward<float, 4>)
GPUNN_EXPORT(dense_act_backward<float, 5>)
GPUNN_EXPORT(dense_act_backward<float, 6>)
GPUNN_EXPORT(dense_act_backward<float, 7>)
GPUNN_EXPORT(dense_act_backward<float, 8>)
GPUNN_EXPORT(swish_forward<float>)
GPUNN_EXPORT(swish_backward<float>)
GPUNN_EXPORT(prelu_forward<float>)
GPUNN_EXPORT(prelu_backward<float>)
GPUNN_EXPORT(column_sums<float>)
GPUNN_EXPORT(sum_partials<float>)
GPUNN_EXPORT(act_forward<double, 0>)
GPUNN_EXPORT(act_forward<double, 1>)
GPUNN_EXPORT(act_forward<double, 2>)
GPUNN_EXPORT(act_forward<double, 3>)
GPUNN_EXPORT(act_forward<double, 4>)
GPUNN_EXPORT(act_forward<double, 5>)
GPUNN_EXPORT(act_forward<double, 6>)
GPUNN_EXPORT(act_forward<double, 7>)
GPUNN_EXPORT(act_backward<double, 0>)
GPUNN_EXPORT(act_backward<double, 1>)
GPUNN_EXPORT(act_backward<double, 2>)
GPUNN_EXPORT(act_backward<double, 3>)
GPUNN_EXPORT(act_backward<double, 4>)
GPUNN_EXPORT(act_backward<double, 5>)
GPUNN_EXPORT(act_backward<double, 6>)
GPUNN_EXPORT(act_backward<double, 7>)
GPUNN_EXPORT(dense_act_forward<double, 0>)
GPUNN_EXPORT(dense_act_forward<double, 1>)
GPUNN_EXPORT(dense_act_forward<double, 2>)
GPUNN_EXPORT(dense_act_forward<double, 3>)
GPUNN_EXPORT(dense_act_forward<double, 4>)
GPUNN_EXPORT(dense_act_forward<double, 5>)
GPUNN_EXPORT(dense_act_forward<double, 6>)
GPUNN_EXPORT(dense_act_forward<double, 7>)
GPUNN_EXPORT(dense_act_forward<double, 8>)
GPUNN_EXPORT(dense_act_backward<double, 0>)
GPUNN_EXPORT(dense_act_backward<double, 1>)
GPUNN_EXPORT(dense_act_backward<double, 2>)
GPUNN_EXPORT(dense_act_backward<double, 3>)
GPUNN_EXPORT(dense_act_backward<double, 4>)
GPUNN_EXPORT(dense_act_backward<double, 5>)
GPUNN_EXPORT(dense_act_backward<double, 6>)
GPUNN_EXPORT(dense_act_backward<double, 7>)
GPUNN_EXPORT(dense_act_backward<double, 8>)
GPUNN_EXPORT(swish_forward<double>)
GPUNN_EXPORT(swish_backward<double>)
GPUNN_EXPORT(prelu_forward<double>)
GPUNN_EXPORT(prelu_backward<double>)
GPUNN_EXPORT(column_sums<double>)
GPUNN_EXPORT(sum_partials<double>)
GPUNN_EXPORT_HALF(act_forward<__half, 0>)
GPUNN_EXPORT_HALF(act_forward<__half, 1>)
GPUNN_EXPORT_HALF(act_forward<__half, 2>)
GPUNN_EXPORT_HALF(act_forward<__half, 3>)
GPUNN_EXPORT_HALF(act_forward<__half, 4>)
GPUNN_EXPORT_HALF(act_forward<__half, 5>)
GPUNN_EXPORT_HALF(act_forward<__half, 6>)
GPUNN_EXPORT_HALF(act_forward<__half, 7>)
GPUNN_EXPORT_HALF(act_backward<__half, 0>)
GPUNN_EXPORT_HALF(act_backward<__half, 1>)
GPUNN_EXPORT_HALF(act_backward<__half, 2>)
GPUNN_EXPORT_HALF(act_backward<__half, 3>)
GPUNN_EXPORT_HALF(act_backward<__half, 4>)
GPUNN_EXPORT_HALF(act_backward<__half, 5>)
GPUNN_EXPORT_HALF(act_backward<__half, 6>)
GPUNN_EXPORT_HALF(act_backward<__half, 7>)
GPUNN_EXPORT_HALF(dense_act_forward<__half, 0>)
GPUNN_EXPORT_HALF(dense_act_forward<__half, 1>)
GPUNN_EXPORT_HALF(dense_act_forward<__half, 2>)
GPUNN_EXPORT_HALF(dense_act_forward<__half, 3>)
GPUNN_EXPORT_HALF(dense_act_forward<__half, 4>)
GPUNN_EXPORT_HALF(dense_act_forward<__half, 5>)
GPUNN_EXPORT_HALF(dense_act_forward<__half, 6>)
GPUNN_EXPORT_HALF(dense_act_forward<__half, 7>)
GPUNN_EXPORT_HALF(dense_act_forward<__half, 8>)
GPUNN_EXPORT_HALF(dense_act_backward<__half, 0>)
GPUNN_EXPORT_HALF(dense_act_backward<__half, 1>)
GPUNN_EXPORT_HALF(dense_act_backward<__half, 2>)
GPUNN_EXPORT_HALF(dense_act_backward<__half, 3>)
GPUNN_EXPORT_HALF(dense_act_backward<__half, 4>)
GPUNN_EXPORT_HALF(dense_act_backward<__half, 5>)
GPUNN_EXPORT_HALF(dense_act_backward<__half, 6>)
GPUNN_EXPORT_HALF(dense_act_backward<__half, 7>)
GPUNN_EXPORT_HALF(dense_act_backward<__half, 8>)
GPUNN_EXPORT_HALF(swish_forward<__half>)
GPUNN_EXPORT_HALF(swish_backward<__half>)
GPUNN_EXPORT_HALF(prelu_forward<__half>)
GPUNN_EXPORT_HALF(prelu_backward<__half>)
GPUNN_EXPORT_HALF(column_sums<__half>)
GPUNN_EXPORT_HALF(sum_partials<__half>)
GPUNN_EXPORT_HALF(act_forward<__nv_bfloat16, 0>)
GPUNN_EXPORT_HALF(act_forward<__nv_bfloat16, 1>)
GPUNN_EXPORT_HALF(act_forward<__nv_bfloat16, 2>)
GPUNN_EXPORT_HALF(act_forward<__nv_bfloat16, 3>)
GPUNN_EXPORT_HALF(act_forward<__nv_bfloat16, 4>)
GPUNN_EXPORT_HALF(act_forward<__nv_bfloat16, 5>)
GPUNN_EXPORT_HALF(act_forward<__nv_bfloat16, 6>)
GPUNN_EXPORT_HALF(act_forward<__nv_bfloat16, 7>)
GPUNN_EXPORT_HALF(act_backward<__nv_bfloat16, 0>)
GPUNN_EXPORT_HALF(act_backward<__nv_bfloat16, 1>)
GPUNN_EXPORT_HALF(act_backward<__nv_bfloat16, 2>)
GPUNN_EXPORT_HALF(act_backward<__nv_bfloat16, 3>)
GPUNN_EXPORT_HALF(act_backward<__nv_bfloat16, 4>)
GPUNN_EXPORT_HALF(act_backward<__nv_bfloat16, 5>)
GPUNN_EXPORT_HALF(act_backward<__nv_bfloat16, 6>)
GPUNN_EXPORT_HALF(act_backward<__nv_bfloat16, 7>)
GPUNN_EXPORT_HALF(dense_act_forward<__nv_bfloat16, 0>)
GPUNN_EXPORT_HALF(dense_act_forward<__nv_bfloat16, 1>)
GPUNN_EXPORT_HALF(dense_act_forward<__nv_bfloat16, 2>)
GPUNN_EXPORT_HALF(dense_act_forward<__nv_bfloat16, 3>)
GPUNN_EXPORT_HALF(dense_act_forward<__nv_bfloat16, 4>)
GPUNN_EXPORT_HALF(dense_act_forward<__nv_bfloat16, 5>)
GPUNN_EXPORT_HALF(dense_act_forward<__nv_bfloat16, 6>)
GPUNN_EXPORT_HALF(dense_act_forward<__nv_bfloat16, 7>)
GPUNN_EXPORT_HALF(dense_act_forward<__nv_bfloat16, 8>)
GPUNN_EXPORT_HALF(dense_act_backward<__nv_bfloat16, 0>)
GPUNN_EXPORT_HALF(dense_act_backward<__nv_bfloat16, 1>)
GPUNN_EXPORT_HALF(dense_act_backward<__nv_bfloat16, 2>)
GPUNN_EXPORT_HALF(dense_act_backward<__nv_bfloat16, 3>)
GPUNN_EXPORT_HALF(dense_act_backward<__nv_bfloat16, 4>)
GPUNN_EXPORT_HALF(dense_act_backward<__nv_bfloat16, 5>)
GPUNN_EXPORT_HALF(dense_act_backward<__nv_bfloat16, 6>)
GPUNN_EXPORT_HALF(dense_act_backward<__nv_bfloat16, 7>)
GPUNN_EXPORT_HALF(dense_act_backward<__nv_bfloat16, 8>)
GPUNN_EXPORT_HALF(swish_forward<__nv_bfloat16>)
GPUNN_EXPORT_HALF(swish_backward<__nv_bfloat16>)
GPUNN_EXPORT_HALF(prelu_forward<__nv_bfloat16>)
GPUNN_EXPORT_HALF(prelu_backward<__nv_bfloat16>)
GPUNN_EXPORT_HALF(column_sums<__nv_bfloat16>)
GPUNN_EXPORT_HALF(sum_partials<__nv_bfloat16>)
