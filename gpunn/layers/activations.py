"""Activation layers. Each name maps to a backend pair ``name(x)`` /
``backprop_name(dy, y)``, so the GPU backend can replace both with fused kernels."""

from __future__ import annotations

from gpunn.layers.base import Layer

# name -> backend op; every op here has its derivative from the output y.
_OPS = {
    "identity": "identity",
    "linear": "identity",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
}


def activation_names() -> list[str]:
    return sorted(_OPS)


class Activation(Layer):
    """Applies an activation by name: ``relu``, ``sigmoid``, ``tanh``, ``softmax``,
    ``identity`` (alias ``linear``).

    Args:
        activation: the name.
        name: optional layer name.
    """

    def __init__(self, activation: str, name: str | None = None):
        super().__init__(name)
        if activation not in _OPS:
            raise ValueError(
                f"activation must be one of {activation_names()}, got {activation!r}"
            )
        self.activation = activation
        self._op = _OPS[activation]
        self._y = None

    def forward(self, x, training: bool = False):
        y = getattr(self.backend, self._op)(x)
        if training:
            self._y = y
        return y

    def backward(self, dy):
        return getattr(self.backend, "backprop_" + self._op)(dy, self._y)

    def flops_per_sample(self) -> int:
        return self.n_in or 0

    def get_config(self) -> dict:
        return {"activation": self.activation, "name": self.name}


class _Named(Activation):
    _activation = "identity"

    def __init__(self, name: str | None = None):
        super().__init__(self._activation, name)

    def get_config(self) -> dict:
        return {"name": self.name}


class ReLU(_Named):
    """``max(x, 0)``; the derivative at 0 is taken as 0 (as PyTorch)."""

    _activation = "relu"


class Sigmoid(_Named):
    """``1 / (1 + exp(-x))``, computed without overflow."""

    _activation = "sigmoid"


class Tanh(_Named):
    """``tanh(x)``."""

    _activation = "tanh"


class Identity(_Named):
    """``y = x``."""

    _activation = "identity"


class Softmax(_Named):
    """Row-wise ``exp(x) / sum(exp(x))``. For training a classifier, prefer raw logits
    with the fused ``"softmax_cross_entropy"`` loss."""

    _activation = "softmax"
