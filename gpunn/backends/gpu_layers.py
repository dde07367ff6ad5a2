"""Kernel-backed ops: activation forward and derivative kernels
(``kernels/activations.cu``), one pass each, float16/32/64.

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`). An input the
kernels do not take (another dtype, a non-contiguous view, mismatched shapes) runs
the reference op, which also raises the reference's errors. PReLU and Swish with a
trainable beta, softmax, and the Dense bias fusions still run the reference.
"""

from __future__ import annotations

import numpy as np

from gpunn.backends import special
from gpunn.backends.kernels import ctype, scalar

FILE = "activations.cu"
# activation -> its index in activations.cu's enum Act
_ACT = {
    "relu": 0,
    "leaky_relu": 1,
    "elu": 2,
    "sigmoid": 3,
    "tanh": 4,
    "silu": 5,
    "gelu": 6,
    "gelu_tanh": 7,
}
_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _fits(*arrays) -> bool:
    """Whether the kernels take these arrays: one float dtype, one shape, contiguous."""
    first = arrays[0]
    return first.dtype in _DTYPES and all(
        a.dtype == first.dtype and a.shape == first.shape and a.flags.c_contiguous
        for a in arrays
    )


class GpuLayerOps:
    """Overrides of the reference activation ops that run one kernel each."""

    def _act_forward(self, act: str, x, p=0.0):
        y = self.xp.empty_like(x)
        name = f"act_forward<{ctype(x.dtype)}, {_ACT[act]}>"
        args = (x, y, np.int64(x.size), scalar(x.dtype, p))
        self.kernels.launch(FILE, name, x.size, args)
        return y

    def _act_backward(self, act: str, dy, saved, p=0.0):
        dx = self.xp.empty_like(dy)
        name = f"act_backward<{ctype(dy.dtype)}, {_ACT[act]}>"
        args = (dy, saved, dx, np.int64(dy.size), scalar(dy.dtype, p))
        self.kernels.launch(FILE, name, dy.size, args)
        return dx

    def relu(self, x):
        return self._act_forward("relu", x) if _fits(x) else super().relu(x)

    def backprop_relu(self, dy, y):
        if not _fits(dy, y):
            return super().backprop_relu(dy, y)
        return self._act_backward("relu", dy, y)

    def leaky_relu(self, x, negative_slope=0.01):
        if not _fits(x):
            return super().leaky_relu(x, negative_slope)
        return self._act_forward("leaky_relu", x, negative_slope)

    def backprop_leaky_relu(self, dy, y, negative_slope=0.01):
        if not _fits(dy, y):
            return super().backprop_leaky_relu(dy, y, negative_slope)
        return self._act_backward("leaky_relu", dy, y, negative_slope)

    def elu(self, x, alpha=1.0):
        return self._act_forward("elu", x, alpha) if _fits(x) else super().elu(x, alpha)

    def backprop_elu(self, dy, y, alpha=1.0):
        if not _fits(dy, y):
            return super().backprop_elu(dy, y, alpha)
        return self._act_backward("elu", dy, y, alpha)

    def sigmoid(self, x):
        return self._act_forward("sigmoid", x) if _fits(x) else super().sigmoid(x)

    def backprop_sigmoid(self, dy, y):
        if not _fits(dy, y):
            return super().backprop_sigmoid(dy, y)
        return self._act_backward("sigmoid", dy, y)

    def tanh(self, x):
        return self._act_forward("tanh", x) if _fits(x) else super().tanh(x)

    def backprop_tanh(self, dy, y):
        if not _fits(dy, y):
            return super().backprop_tanh(dy, y)
        return self._act_backward("tanh", dy, y)

    def silu(self, x):
        return self._act_forward("silu", x) if _fits(x) else super().silu(x)

    def backprop_silu(self, dy, x):
        if not _fits(dy, x):
            return super().backprop_silu(dy, x)
        return self._act_backward("silu", dy, x)

    def gelu(self, x, approximate="none"):
        if not _fits(x):
            return super().gelu(x, approximate)
        tanh = special.gelu_is_tanh(approximate)  # raises on a bad value
        return self._act_forward("gelu_tanh" if tanh else "gelu", x)

    def backprop_gelu(self, dy, x, approximate="none"):
        if not _fits(dy, x):
            return super().backprop_gelu(dy, x, approximate)
        tanh = special.gelu_is_tanh(approximate)
        return self._act_backward("gelu_tanh" if tanh else "gelu", dy, x)
