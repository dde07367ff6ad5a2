"""Kernel-backed ops: activation forward/backward kernels (bias add and bias-gradient fused).

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`).
"""

from __future__ import annotations


class GpuLayerOps:
    """Overrides of the reference ops that run custom kernels."""
