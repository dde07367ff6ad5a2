// scale_: x[i] *= alpha, in place. A minimal kernel that exercises the build, packaging
// and CI compile path; the fused kernels of the GPU backend follow the same contract.
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

template __global__ void scale_<float>(float*, float, long long);
template __global__ void scale_<double>(double*, double, long long);
template __global__ void scale_<__half>(__half*, float, long long);
