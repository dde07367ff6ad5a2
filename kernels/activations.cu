// Activation forward and derivative kernels, one pass each.
//
// Launch: any 1-D grid of 1-D blocks (grid-stride loop over n elements; n may be 0).
// Forward  act_forward<T, ACT>(const T* x, T* y, long long n, A p): y = act(x).
// Backward act_backward<T, ACT>(const T* dy, const T* saved, T* dx, long long n, A p):
//   dx = dy * act'(.), from `saved` = the output y (ReLU, LeakyReLU, ELU, Sigmoid,
//   Tanh) or the input x (SiLU, GELU), as gpunn.layers.activations documents.
// A is the accumulate type (float for half); p is the activation's option
// (LeakyReLU's negative_slope, ELU's alpha; unused otherwise). All arrays contiguous
// with n elements. The formulas, their order and the values at kinks are those of the
// reference ops in gpunn/backends/ops_layers.py.
#include "common.cuh"

namespace gpunn {

enum Act { RELU = 0, LEAKY_RELU = 1, ELU = 2, SIGMOID = 3, TANH = 4, SILU = 5,
           GELU = 6, GELU_TANH = 7 };

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

template <int ACT, typename A> __device__ __forceinline__ A forward(A x, A p) {
  switch (ACT) {
    case RELU: return x > A(0) ? x : (x != x ? x : A(0));
    case LEAKY_RELU: return x > A(0) ? x : x * p;
    case ELU: return x > A(0) ? x : p * expm1_((x < A(0) || x != x) ? x : A(0));
    case SIGMOID: return sigmoid(x);
    case TANH: return tanh_(x);
    case SILU: return x * sigmoid(x);
    case GELU: return A(0.5) * x * (A(1) + erf_(x * A(0.7071067811865476)));
    default: return A(0.5) * x * (A(1) + tanh_(tanh_inner(x)));  // GELU_TANH
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
    default: {  // GELU_TANH
      A t = tanh_(tanh_inner(s));
      A dinner = A(0.7978845608028654) * (A(1) + A(3) * A(0.044715) * s * s);
      return dy * (A(0.5) * (A(1) + t) + A(0.5) * s * (A(1) - t * t) * dinner);
    }
  }
}

}  // namespace gpunn

template <typename T, int ACT>
__global__ void act_forward(const T* __restrict__ x, T* __restrict__ y, long long n,
                            typename gpunn::acc<T>::type p) {
  GPUNN_GRID_STRIDE(i, n) {
    y[i] = gpunn::store<T>(gpunn::forward<ACT>(gpunn::load(x[i]), p));
  }
}

template <typename T, int ACT>
__global__ void act_backward(const T* __restrict__ dy, const T* __restrict__ saved,
                             T* __restrict__ dx, long long n,
                             typename gpunn::acc<T>::type p) {
  GPUNN_GRID_STRIDE(i, n) {
    dx[i] = gpunn::store<T>(
        gpunn::backward<ACT>(gpunn::load(dy[i]), gpunn::load(saved[i]), p));
  }
}

GPUNN_EXPORT(act_forward<float, 0>)
GPUNN_EXPORT(act_forward<float, 1>)
GPUNN_EXPORT(act_forward<float, 2>)
GPUNN_EXPORT(act_forward<float, 3>)
GPUNN_EXPORT(act_forward<float, 4>)
GPUNN_EXPORT(act_forward<float, 5>)
GPUNN_EXPORT(act_forward<float, 6>)
GPUNN_EXPORT(act_forward<float, 7>)
GPUNN_EXPORT(act_forward<double, 0>)
GPUNN_EXPORT(act_forward<double, 1>)
GPUNN_EXPORT(act_forward<double, 2>)
GPUNN_EXPORT(act_forward<double, 3>)
GPUNN_EXPORT(act_forward<double, 4>)
GPUNN_EXPORT(act_forward<double, 5>)
GPUNN_EXPORT(act_forward<double, 6>)
GPUNN_EXPORT(act_forward<double, 7>)
GPUNN_EXPORT(act_backward<float, 0>)
GPUNN_EXPORT(act_backward<float, 1>)
GPUNN_EXPORT(act_backward<float, 2>)
GPUNN_EXPORT(act_backward<float, 3>)
GPUNN_EXPORT(act_backward<float, 4>)
GPUNN_EXPORT(act_backward<float, 5>)
GPUNN_EXPORT(act_backward<float, 6>)
GPUNN_EXPORT(act_backward<float, 7>)
GPUNN_EXPORT(act_backward<double, 0>)
GPUNN_EXPORT(act_backward<double, 1>)
GPUNN_EXPORT(act_backward<double, 2>)
GPUNN_EXPORT(act_backward<double, 3>)
GPUNN_EXPORT(act_backward<double, 4>)
GPUNN_EXPORT(act_backward<double, 5>)
GPUNN_EXPORT(act_backward<double, 6>)
GPUNN_EXPORT(act_backward<double, 7>)
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
