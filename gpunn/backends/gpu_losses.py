"""Kernel-backed ops: fused softmax-cross-entropy and binary cross-entropy kernels.

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`).
"""

from __future__ import annotations


class GpuLossOps:
    """Overrides of the reference ops that run custom kernels."""
