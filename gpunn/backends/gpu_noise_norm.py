"""Kernel-backed ops: counter-based dropout and batch-normalization kernels.

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`).
"""

from __future__ import annotations


class GpuNoiseNormOps:
    """Overrides of the reference ops that run custom kernels."""
