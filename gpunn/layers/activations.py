"""Activation layers. Each name maps to a backend pair ``op(x, **options)`` /
``backprop_op(dy, saved, **options)``, where ``saved`` is the op's input ``x`` or its
output ``y``, whichever its derivative is computed from; while training a layer keeps
only that one. The GPU backend can replace both ops with fused kernels.

| name | op | backward from | options (PyTorch defaults) |
|---|---|---|---|
| ``identity`` / ``linear`` | ``identity`` | nothing | |
| ``relu`` | ``relu`` | y | |
| ``leaky_relu`` | ``leaky_relu`` | y | ``negative_slope=0.01`` (>= 0) |
| ``elu`` | ``elu`` | y | ``alpha=1.0`` (> 0) |
| ``sigmoid`` / ``tanh`` | same | y | |
| ``silu`` / ``swish`` | ``silu`` | x | |
| ``gelu`` | ``gelu`` | x | ``approximate="none"`` or ``"tanh"`` |
| ``softmax`` | ``softmax`` | y | ``temperature=1.0`` (> 0) |
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gpunn.backends.special import gelu_is_tanh
from gpunn.checks import check_real
from gpunn.errors import ArgumentError, ArgumentTypeError
from gpunn.layers.base import Layer


class _Op(NamedTuple):
    op: str  # the backend op
    saves: str  # what its backprop needs: "x", "y" or "" (neither)
    options: tuple = ()  # ((option, default), ...)


_OPS = {
    "identity": _Op("identity", ""),
    "linear": _Op("identity", ""),
    "relu": _Op("relu", "y"),
    "leaky_relu": _Op("leaky_relu", "y", (("negative_slope", 0.01),)),
    "elu": _Op("elu", "y", (("alpha", 1.0),)),
    "sigmoid": _Op("sigmoid", "y"),
    "tanh": _Op("tanh", "y"),
    "silu": _Op("silu", "x"),
    "swish": _Op("silu", "x"),
    "gelu": _Op("gelu", "x", (("approximate", "none"),)),
    "softmax": _Op("softmax", "y", (("temperature", 1.0),)),
}


def _approximate(value) -> str:
    gelu_is_tanh(value)  # raises ValueError naming the argument
    return value


_CHECKS = {
    "negative_slope": lambda v: check_real("negative_slope", v, lo=0),
    "alpha": lambda v: check_real("alpha", v, lo=0, lo_open=True),
    "temperature": lambda v: check_real("temperature", v, lo=0, lo_open=True),
    "approximate": _approximate,
}


def activation_names() -> list[str]:
    return sorted(_OPS)


class Activation(Layer):
    """Applies an activation by name (see the module's table), with its options.

    Args:
        activation: the name, e.g. ``"relu"``, ``"gelu"``, ``"leaky_relu"``.
        name: optional layer name.
        **options: the activation's options, e.g. ``negative_slope=0.2`` for
            ``"leaky_relu"``; defaults as PyTorch.

    Shape: ``(batch, n)`` -> ``(batch, n)``.
    """

    def __init__(self, activation: str, name: str | None = None, **options):
        super().__init__(name)
        if activation not in _OPS:
            raise ArgumentError(
                f"activation must be one of {activation_names()}, got {activation!r}"
            )
        spec = _OPS[activation]
        defaults = dict(spec.options)
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise ArgumentTypeError(
                f"activation {activation!r} takes the options {sorted(defaults)}, "
                f"got {unknown}"
            )
        self.options = {k: _CHECKS[k](options.get(k, d)) for k, d in spec.options}
        self.activation = activation
        self._spec = spec
        self._x = self._y = None
        self._in_dtype = None

    def __getattr__(self, key: str):
        """Options read as attributes, as on PyTorch modules: ``layer.temperature``,
        ``layer.negative_slope``, ``layer.alpha``, ``layer.approximate``."""
        options = self.__dict__.get("options", {})
        if key in options:
            return options[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def forward(self, x, training: bool = False):
        in_dtype = x.dtype
        if self.activation == "softmax" and x.dtype.itemsize == 2:
            x = x.astype(np.float32)  # mixed precision: probabilities in float32
        y = getattr(self.backend, self._spec.op)(x, **self.options)
        if training:
            self._x = x if self._spec.saves == "x" else None
            self._y = y if self._spec.saves == "y" else None
            self._in_dtype = in_dtype
        return y

    def backward(self, dy):
        saved = self._x if self._spec.saves == "x" else self._y
        if saved is not None and dy.dtype != saved.dtype:  # the op's dtype
            dy = dy.astype(saved.dtype)
        backprop = getattr(self.backend, "backprop_" + self._spec.op)
        dx = backprop(dy, saved, **self.options)
        return dx if dx.dtype == self._in_dtype else dx.astype(self._in_dtype)

    def flops_per_sample(self) -> int:
        return self.n_in or 0

    def activation_config(self) -> str | dict:
        """The name, or ``{"activation": name, **options}`` when an option differs
        from its default: what ``Dense(activation=...)`` and :func:`get` take."""
        defaults = dict(self._spec.options)
        changed = {k: v for k, v in self.options.items() if v != defaults[k]}
        if not changed:
            return self.activation
        return {"activation": self.activation, **changed}

    def get_config(self) -> dict:
        return {"activation": self.activation, **self.options, "name": self.name}


def get(activation) -> Activation | None:
    """A new :class:`Activation` from a name, a config ``{"activation": name,
    **options}`` or an Activation (copied, so no two layers share one); None stays
    None."""
    if activation is None:
        return None
    if isinstance(activation, Activation):
        activation = activation.activation_config()
    if isinstance(activation, str):
        return Activation(activation)
    if isinstance(activation, dict):
        options = dict(activation)
        return Activation(options.pop("activation", None), **options)
    raise ArgumentTypeError(
        "activation must be a name, a config dict or an Activation, "
        f"got {type(activation).__name__}"
    )


class _Named(Activation):
    _activation = "identity"

    def __init__(self, name: str | None = None, **options):
        super().__init__(self._activation, name, **options)

    def get_config(self) -> dict:
        return {**self.options, "name": self.name}


class ReLU(_Named):
    """``max(x, 0)``; the derivative at 0 is taken as 0 (as PyTorch)."""

    _activation = "relu"


class LeakyReLU(_Named):
    """``x if x > 0 else negative_slope * x`` (Maas et al. 2013), as PyTorch's
    ``LeakyReLU``; the derivative at 0 is ``negative_slope``.

    Args:
        negative_slope: slope for ``x <= 0``, >= 0 (the backward reads the sign of the
            output). Default: 0.01.
        name: optional layer name.
    """

    _activation = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, name: str | None = None):
        super().__init__(name, negative_slope=negative_slope)


class ELU(_Named):
    """``x if x > 0 else alpha * (exp(x) - 1)`` (Clevert et al. 2016, "Fast and
    Accurate Deep Network Learning by Exponential Linear Units"), as PyTorch's ``ELU``;
    the derivative, ``1`` or ``y + alpha``, is taken from the output (``alpha`` at 0).

    Args:
        alpha: > 0. Default: 1.0.
        name: optional layer name.
    """

    _activation = "elu"

    def __init__(self, alpha: float = 1.0, name: str | None = None):
        super().__init__(name, alpha=alpha)


class SiLU(_Named):
    """``x * sigmoid(x)``: SiLU (Hendrycks & Gimpel 2016; Elfwing et al. 2018), also
    Swish with ``beta = 1`` (Ramachandran et al. 2017); the name ``"swish"`` is this
    op. For a (trainable) ``beta`` use :class:`gpunn.layers.Swish`."""

    _activation = "silu"


class GELU(_Named):
    """``x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))`` (Hendrycks & Gimpel 2016,
    "Gaussian Error Linear Units"), as PyTorch's ``GELU``.

    Args:
        approximate: ``"none"`` (exact, through the backend's ``erf``) or ``"tanh"``:
            ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``.
            Default: ``"none"``.
        name: optional layer name.
    """

    _activation = "gelu"

    def __init__(self, approximate: str = "none", name: str | None = None):
        super().__init__(name, approximate=approximate)


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
    """Row-wise ``softmax(x / temperature) = exp(x / T) / sum(exp(x / T))``. For
    training a classifier, prefer raw logits with the fused ``"softmax_cross_entropy"``
    loss.

    Args:
        temperature: ``T > 0``; above 1 flattens, below 1 sharpens. Default: 1.0.
        name: optional layer name.

    Shape: ``(batch, classes)`` -> ``(batch, classes)``.
    """

    _activation = "softmax"

    def __init__(self, temperature: float = 1.0, name: str | None = None):
        super().__init__(name, temperature=temperature)
