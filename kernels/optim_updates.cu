// Fused optimizer updates: one launch updates the whole flat parameter arena.
//
// Launch (elementwise kernels, sgd_update ... adamax_update): any 1-D grid of 1-D
// blocks (grid-stride loop over the n elements; n may be 0). The segmented kernels of
// LARS and LAMB (lars_update, lamb_direction, lamb_apply) walk a table of chunks
// instead: see their section below.
// Args: the arena buffers (param, grad, the optimizer's state; all contiguous, n
// elements of T; a state buffer whose option is off is never touched, so the launcher
// may pass any array there), n, then the hyperparameters as T and the flags as int,
// in the order of each signature. Scalars that torch derives on the host (bias
// corrections, step sizes, 1 - beta) come in precomputed, exactly as
// gpunn.backends.updates computes them.
//
// Each kernel performs the operations of its reference in gpunn/backends/updates.py in
// the same order, each rounded to T (compiled without FMA contraction), so float64
// results match the reference to the last bit or one, and float32 to a few ulp.
// The last argument, param_copy (C*), is the arena's 16-bit copy of the parameters
// under mixed precision: each updated parameter is also written there, rounded to C,
// in the same pass. Instantiated <T, void> for float and double (no copy; pass any
// pointer), and in the half module <float, __half> and <float, __nv_bfloat16>.
#include "common.cuh"

namespace {

template <typename T> __device__ __forceinline__ T sqrt_(T x) { return sqrt(x); }
template <> __device__ __forceinline__ float sqrt_<float>(float x) { return sqrtf(x); }
template <typename T> __device__ __forceinline__ T abs_(T x) { return fabs(x); }
template <> __device__ __forceinline__ float abs_<float>(float x) { return fabsf(x); }

// np.maximum: NaN if either is NaN.
template <typename T> __device__ __forceinline__ T maximum_(T a, T b) {
  return (a != a || a > b) ? a : b;
}

// torch.lerp's rounding: start + w (end - start) below w = 0.5, else end - (end -
// start)(1 - w); `rest` is the host's 1 - w.
template <typename T> __device__ __forceinline__ T lerp_(T start, T end, T w, T rest) {
  return w < T(0.5) ? start + w * (end - start) : end - (end - start) * rest;
}

// The gradient torch's rules start from: negated to maximize, plus the L2 term.
template <typename T>
__device__ __forceinline__ T l2_grad(T grad, T param, T weight_decay, int maximize) {
  T g = maximize ? -grad : grad;
  return weight_decay != T(0) ? g + weight_decay * param : g;
}

// The parameter write: param[i] = p and, when C is not void, its 16-bit copy.
template <typename C, typename T>
__device__ __forceinline__ void put_param(T* __restrict__ param, C* __restrict__ copy,
                                          long long i, T p) {
  param[i] = p;
  if constexpr (!gpunn::is_void<C>::value) copy[i] = gpunn::store<C>(p);
}

}  // namespace

// torch.optim.SGD (gpunn.backends.updates.sgd_); buf unused when momentum is 0.
template <typename T, typename C>
__global__ void sgd_update(T* __restrict__ param, const T* __restrict__ grad,
                           T* __restrict__ buf, long long n, T lr, T momentum,
                           T one_minus_dampening, T weight_decay, int nesterov,
                           int maximize, int first_step,
                           C* __restrict__ param_copy) {
  GPUNN_GRID_STRIDE(i, n) {
    T p = param[i];
    T g = l2_grad(grad[i], p, weight_decay, maximize);
    if (momentum != T(0)) {
      T b = first_step ? g : buf[i] * momentum + one_minus_dampening * g;
      buf[i] = b;
      g = nesterov ? g + momentum * b : b;
    }
    put_param(param, param_copy, i, p - lr * g);
  }
}

// The decay and moments Adam and NAdam share (updates._moments_); returns g.
template <typename T>
__device__ __forceinline__ T adam_moments(T& p, T grad, T& m, T& v, T decay_scale,
                                          T weight_decay, int decoupled, int maximize,
                                          T w1, T rest1, T beta2, T one_minus_beta2) {
  T g = maximize ? -grad : grad;
  if (weight_decay != T(0)) {
    if (decoupled) p = p * decay_scale;
    else g = g + weight_decay * p;
  }
  m = lerp_(m, g, w1, rest1);
  v = v * beta2 + (one_minus_beta2 * g) * g;
  return g;
}

// torch.optim.Adam / AdamW (updates.adam_); max_exp_avg_sq unused without amsgrad.
// decay_scale = 1 - lr * weight_decay, w1 = 1 - beta1, rest1 = 1 - w1.
template <typename T, typename C>
__global__ void adam_update(T* __restrict__ param, const T* __restrict__ grad,
                            T* __restrict__ exp_avg, T* __restrict__ exp_avg_sq,
                            T* __restrict__ max_exp_avg_sq, long long n, T decay_scale,
                            T weight_decay, T w1, T rest1, T beta2, T one_minus_beta2,
                            T eps, T step_size, T bias_correction2_sqrt, int decoupled,
                            int maximize, int amsgrad, C* __restrict__ param_copy) {
  GPUNN_GRID_STRIDE(i, n) {
    T p = param[i], m = exp_avg[i], v = exp_avg_sq[i];
    adam_moments(p, grad[i], m, v, decay_scale, weight_decay, decoupled, maximize, w1,
                 rest1, beta2, one_minus_beta2);
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    T top = v;
    if (amsgrad) {
      top = maximum_(max_exp_avg_sq[i], v);
      max_exp_avg_sq[i] = top;
    }
    T denom = sqrt_(top) / bias_correction2_sqrt + eps;
    put_param(param, param_copy, i, p - (step_size * m) / denom);
  }
}

// torch.optim.NAdam (updates.nadam_): grad_coef and avg_coef are the host's
// (negative) factors of g / denom and m / denom.
template <typename T, typename C>
__global__ void nadam_update(T* __restrict__ param, const T* __restrict__ grad,
                             T* __restrict__ exp_avg, T* __restrict__ exp_avg_sq,
                             long long n, T decay_scale, T weight_decay, T w1, T rest1,
                             T beta2, T one_minus_beta2, T eps, T bias_correction2,
                             T grad_coef, T avg_coef, int decoupled, int maximize,
                             C* __restrict__ param_copy) {
  GPUNN_GRID_STRIDE(i, n) {
    T p = param[i], m = exp_avg[i], v = exp_avg_sq[i];
    T g = adam_moments(p, grad[i], m, v, decay_scale, weight_decay, decoupled,
                       maximize, w1, rest1, beta2, one_minus_beta2);
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    T denom = sqrt_(v / bias_correction2) + eps;
    p = p + (grad_coef * g) / denom;
    put_param(param, param_copy, i, p + (avg_coef * m) / denom);
  }
}

// torch.optim.RMSprop (updates.rmsprop_); grad_avg unused unless centered, buf
// unused without momentum. w = 1 - alpha, rest = 1 - w.
template <typename T, typename C>
__global__ void rmsprop_update(T* __restrict__ param, const T* __restrict__ grad,
                               T* __restrict__ square_avg, T* __restrict__ grad_avg,
                               T* __restrict__ buf, long long n, T lr, T alpha,
                               T one_minus_alpha, T w, T rest, T eps, T weight_decay,
                               T momentum, int maximize, int centered,
                               C* __restrict__ param_copy) {
  GPUNN_GRID_STRIDE(i, n) {
    T p = param[i];
    T g = l2_grad(grad[i], p, weight_decay, maximize);
    T sq = square_avg[i] * alpha + (one_minus_alpha * g) * g;
    square_avg[i] = sq;
    T avg;
    if (centered) {
      T ga = lerp_(grad_avg[i], g, w, rest);
      grad_avg[i] = ga;
      avg = sqrt_(sq - ga * ga);
    } else {
      avg = sqrt_(sq);
    }
    avg = avg + eps;
    if (momentum > T(0)) {
      T b = buf[i] * momentum + g / avg;
      buf[i] = b;
      put_param(param, param_copy, i, p - lr * b);
    } else {
      put_param(param, param_copy, i, p - (lr * g) / avg);
    }
  }
}

// torch.optim.Adagrad (updates.adagrad_); clr = lr / (1 + (t - 1) lr_decay).
template <typename T, typename C>
__global__ void adagrad_update(T* __restrict__ param, const T* __restrict__ grad,
                               T* __restrict__ state_sum, long long n, T clr, T eps,
                               T weight_decay, int maximize,
                               C* __restrict__ param_copy) {
  GPUNN_GRID_STRIDE(i, n) {
    T p = param[i];
    T g = l2_grad(grad[i], p, weight_decay, maximize);
    T s = state_sum[i] + g * g;
    state_sum[i] = s;
    put_param(param, param_copy, i, p - (clr * g) / (sqrt_(s) + eps));
  }
}

// torch.optim.Adadelta (updates.adadelta_).
template <typename T, typename C>
__global__ void adadelta_update(T* __restrict__ param, const T* __restrict__ grad,
                                T* __restrict__ square_avg, T* __restrict__ acc_delta,
                                long long n, T lr, T rho, T one_minus_rho, T eps,
                                T weight_decay, int maximize,
                                C* __restrict__ param_copy) {
  GPUNN_GRID_STRIDE(i, n) {
    T p = param[i];
    T g = l2_grad(grad[i], p, weight_decay, maximize);
    T sq = square_avg[i] * rho + (one_minus_rho * g) * g;
    square_avg[i] = sq;
    T a = acc_delta[i];
    T delta = sqrt_(a + eps) / sqrt_(sq + eps) * g;
    acc_delta[i] = a * rho + (one_minus_rho * delta) * delta;
    put_param(param, param_copy, i, p - lr * delta);
  }
}

// torch.optim.Adamax (updates.adamax_); clr = lr / (1 - beta1^t).
template <typename T, typename C>
__global__ void adamax_update(T* __restrict__ param, const T* __restrict__ grad,
                              T* __restrict__ exp_avg, T* __restrict__ exp_inf,
                              long long n, T w1, T rest1, T beta2, T eps,
                              T weight_decay, T clr, int maximize,
                              C* __restrict__ param_copy) {
  GPUNN_GRID_STRIDE(i, n) {
    T p = param[i];
    T g = l2_grad(grad[i], p, weight_decay, maximize);
    T m = lerp_(exp_avg[i], g, w1, rest1);
    exp_avg[i] = m;
    T e = maximum_(exp_inf[i] * beta2, abs_(g) + eps);
    exp_inf[i] = e;
    put_param(param, param_copy, i, p - (clr * m) / e);
  }
}

// Segmented kernels (LARS, LAMB): block b walks the entries b, b + grid, ... of a
// table that splits the arena into chunks of one tensor each (entry e covers elements
// [entry_start[e], entry_start[e + 1]) of tensor entry_seg[e]; the entries cover all
// n elements), so each block reads its tensor's trust ratio once. Launch: 1-D blocks
// of a multiple of 32 threads, any grid. adapt (one 0/1 per tensor) is NULL when
// every tensor adapts.
#define OPTIM_FOR_ENTRY(e, lo, hi, seg)                                       \
  for (long long e = blockIdx.x; e < n_entries; e += gridDim.x)               \
    for (long long lo = entry_start[e], hi = entry_start[e + 1],              \
                   seg = entry_seg[e], once_ = 1;                             \
         once_; once_ = 0)

// LARS (updates.lars_): g = ratio[tensor] * (g + weight_decay * adapt * p), then
// SGD's momentum without dampening; buf unused when momentum is 0.
template <typename T, typename C>
__global__ void lars_update(T* __restrict__ param, const T* __restrict__ grad,
                            T* __restrict__ buf, const T* __restrict__ ratio,
                            const T* __restrict__ adapt,
                            const long long* __restrict__ entry_start,
                            const long long* __restrict__ entry_seg,
                            long long n_entries, T lr, T momentum, T weight_decay,
                            int maximize, int first_step,
                            C* __restrict__ param_copy) {
  OPTIM_FOR_ENTRY(e, lo, hi, seg) {
    const T r = ratio[seg];
    const T decay = adapt != nullptr ? weight_decay * adapt[seg] : weight_decay;
    for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      T p = param[i];
      T g = maximize ? -grad[i] : grad[i];
      if (weight_decay != T(0)) g = g + decay * p;
      g = g * r;
      if (momentum != T(0)) {
        T b = first_step ? g : buf[i] * momentum + g;
        buf[i] = b;
        g = b;
      }
      put_param(param, param_copy, i, p - lr * g);
    }
  }
}

// LAMB, first half (updates.lamb_direction_): both moments and the direction
// r = m / bc1 / (sqrt(v / bc2) + eps) + weight_decay * adapt * p, and per entry the
// sums of p^2 and r^2 (partials[e] and partials[n_entries + e], float64) for the
// norms of the trust ratio (optim_norms.cu: trust_ratio_finish).
template <typename T>
__global__ void lamb_direction(const T* __restrict__ param, const T* __restrict__ grad,
                               T* __restrict__ exp_avg, T* __restrict__ exp_avg_sq,
                               T* __restrict__ direction, const T* __restrict__ adapt,
                               const long long* __restrict__ entry_start,
                               const long long* __restrict__ entry_seg,
                               long long n_entries, T w1, T rest1, T beta2,
                               T one_minus_beta2, T eps, T weight_decay,
                               T bias_correction1, T bias_correction2, int maximize,
                               double* __restrict__ partials) {
  __shared__ double scratch[GPUNN_MAX_WARPS];
  OPTIM_FOR_ENTRY(e, lo, hi, seg) {
    const T decay = adapt != nullptr ? weight_decay * adapt[seg] : weight_decay;
    double sum_p = 0, sum_r = 0;
    for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      const T p = param[i];
      const T g = maximize ? -grad[i] : grad[i];
      const T m = lerp_(exp_avg[i], g, w1, rest1);
      const T v = exp_avg_sq[i] * beta2 + (one_minus_beta2 * g) * g;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      T r = m / bias_correction1 / (sqrt_(v / bias_correction2) + eps);
      if (weight_decay != T(0)) r = r + decay * p;
      direction[i] = r;
      sum_p += static_cast<double>(p) * static_cast<double>(p);
      sum_r += static_cast<double>(r) * static_cast<double>(r);
    }
    sum_p = gpunn::block_sum(sum_p, scratch);
    sum_r = gpunn::block_sum(sum_r, scratch);
    if (threadIdx.x == 0) {
      partials[e] = sum_p;
      partials[n_entries + e] = sum_r;
    }
  }
}

// LAMB, second half (updates.lamb_apply_): p -= lr * ratio[tensor] * r.
template <typename T, typename C>
__global__ void lamb_apply(T* __restrict__ param, const T* __restrict__ direction,
                           const T* __restrict__ ratio,
                           const long long* __restrict__ entry_start,
                           const long long* __restrict__ entry_seg,
                           long long n_entries, T lr,
                           C* __restrict__ param_copy) {
  OPTIM_FOR_ENTRY(e, lo, hi, seg) {
    const T step = lr * ratio[seg];
    for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x)
      put_param(param, param_copy, i, param[i] - step * direction[i]);
  }
}


GPUNN_EXPORT(sgd_update<float, void>)
GPUNN_EXPORT(sgd_update<double, void>)
GPUNN_EXPORT(adam_update<float, void>)
GPUNN_EXPORT(adam_update<double, void>)
GPUNN_EXPORT(nadam_update<float, void>)
GPUNN_EXPORT(nadam_update<double, void>)
GPUNN_EXPORT(rmsprop_update<float, void>)
GPUNN_EXPORT(rmsprop_update<double, void>)
GPUNN_EXPORT(adagrad_update<float, void>)
GPUNN_EXPORT(adagrad_update<double, void>)
GPUNN_EXPORT(adadelta_update<float, void>)
GPUNN_EXPORT(adadelta_update<double, void>)
GPUNN_EXPORT(adamax_update<float, void>)
GPUNN_EXPORT(adamax_update<double, void>)
GPUNN_EXPORT(lars_update<float, void>)
GPUNN_EXPORT(lars_update<double, void>)
GPUNN_EXPORT(lamb_direction<float>)
GPUNN_EXPORT(lamb_direction<double>)
GPUNN_EXPORT(lamb_apply<float, void>)
GPUNN_EXPORT(lamb_apply<double, void>)
GPUNN_EXPORT_HALF(sgd_update<float, __half>)
GPUNN_EXPORT_HALF(sgd_update<float, __nv_bfloat16>)
GPUNN_EXPORT_HALF(adam_update<float, __half>)
GPUNN_EXPORT_HALF(adam_update<float, __nv_bfloat16>)
GPUNN_EXPORT_HALF(nadam_update<float, __half>)
GPUNN_EXPORT_HALF(nadam_update<float, __nv_bfloat16>)
GPUNN_EXPORT_HALF(rmsprop_update<float, __half>)
GPUNN_EXPORT_HALF(rmsprop_update<float, __nv_bfloat16>)
GPUNN_EXPORT_HALF(adagrad_update<float, __half>)
GPUNN_EXPORT_HALF(adagrad_update<float, __nv_bfloat16>)
GPUNN_EXPORT_HALF(adadelta_update<float, __half>)
GPUNN_EXPORT_HALF(adadelta_update<float, __nv_bfloat16>)
GPUNN_EXPORT_HALF(adamax_update<float, __half>)
GPUNN_EXPORT_HALF(adamax_update<float, __nv_bfloat16>)
GPUNN_EXPORT_HALF(lars_update<float, __half>)
GPUNN_EXPORT_HALF(lars_update<float, __nv_bfloat16>)
GPUNN_EXPORT_HALF(lamb_apply<float, __half>)
GPUNN_EXPORT_HALF(lamb_apply<float, __nv_bfloat16>)
