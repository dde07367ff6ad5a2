"""The reference backend with its hot ops replaced by custom CUDA kernels.

:class:`KernelBackend` combines the kernel op mixins with :class:`NumpyBackend`, so
every op a kernel does not cover (or a case it does not, such as a dtype) runs the
reference code. Subclasses choose the array module and how kernels are compiled:
:class:`~gpunn.backends.cupy_backend.CupyBackend` (CuPy, NVRTC) and, in the tests, an
emulated backend that runs the same kernels on the CPU. Nothing here imports CuPy.
"""

from __future__ import annotations

from gpunn.backends.gpu_layers import GpuLayerOps
from gpunn.backends.gpu_losses import GpuLossOps
from gpunn.backends.gpu_noise_norm import GpuNoiseNormOps
from gpunn.backends.gpu_optim import GpuOptimOps
from gpunn.backends.kernels import KernelLibrary
from gpunn.backends.numpy_backend import NumpyBackend


class KernelBackend(
    GpuLayerOps, GpuLossOps, GpuOptimOps, GpuNoiseNormOps, NumpyBackend
):
    """The reference ops, with the fused-kernel overrides of the mixins first."""

    kernels: KernelLibrary  # set by the subclass
