"""Kernel-backed ops: fused optimizer updates over the flat arena, norms and clipping.

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`).
"""

from __future__ import annotations


class GpuOptimOps:
    """Overrides of the reference ops that run custom kernels."""
