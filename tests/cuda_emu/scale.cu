// scale_: x[i] *= alpha, in place. A test kernel of the emulator's own (not shipped):
// the smallest kernel in the shipped kernels' style, with a half instantiation.
//
// Launch: any 1-D grid and block (grid-stride loop); n may be 0.
// Args: T* x (contiguous, n elements), A alpha (the accumulate type: float for half),
//       long long n.
// Instantiate: scale_<float>, scale_<double>, scale_<__half>.
#include "common.cuh"

template <typename T>
__global__ void scale_(T* __restrict__ x, typename gpunn::acc<T>::type alpha,
                       long long n) {
  GPUNN_GRID_STRIDE(i, n) { x[i] = gpunn::store<T>(gpunn::load(x[i]) * alpha); }
}

GPUNN_EXPORT(scale_<float>)
GPUNN_EXPORT(scale_<double>)
GPUNN_EXPORT_HALF(scale_<__half>)
