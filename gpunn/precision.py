"""Precision policies: which dtype a model keeps its weights in and which it computes in.

``"float32"`` (the default) computes everything in the model's ``dtype`` (float32 or
float64). The two mixed policies, named as in Keras, keep the parameter arena float32
(the master weights, their gradients and the optimizer state) and compute the layers
in a 16-bit type:

- ``"mixed_bfloat16"``: bfloat16 (8-bit exponent: float32's range, 8-bit mantissa);
  needs no loss scaling. bfloat16 comes from ``ml_dtypes`` (CuPy 14 spells it the same
  way), a dependency of the ``cpu``, ``cuda12x`` and ``cuda13x`` extras.
- ``"mixed_float16"``: IEEE half (5-bit exponent, largest 65504); gradients are kept in
  range by dynamic loss scaling (:class:`gpunn.optim.LossScaler`).

In a mixed policy a layer that multiplies by weights (``Dense``) takes its inputs and a
16-bit copy of its weights in the compute dtype and accumulates in float32; activations,
dropout and noise keep their input's dtype, computing in float32 inside; softmax, the
losses, normalization statistics and every reduction run in float32; gradients reach
the float32 arena. The optimizer writes the 16-bit copy of the weights as it updates
the masters. ``predict`` returns float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpunn.errors import ArgumentError

__all__ = ["POLICIES", "Policy", "bfloat16", "get", "is_half"]

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
_BFLOAT16_FIX = (
    "bfloat16 needs the ml_dtypes package: pip install 'gpunn[cpu]' (or "
    "'gpunn[cuda12x]' / 'gpunn[cuda13x]'), or pip install ml_dtypes"
)


def bfloat16() -> np.dtype:
    """NumPy's bfloat16 dtype (from ``ml_dtypes``); ImportError naming the extra when
    ml_dtypes is missing."""
    try:
        import ml_dtypes
    except ImportError as exc:
        raise ImportError(f"{_BFLOAT16_FIX} ({exc})") from None
    return np.dtype(ml_dtypes.bfloat16)


def is_half(dtype) -> bool:
    """Whether ``dtype`` is one of the 16-bit float types: float16 (kind "f") or
    ml_dtypes' bfloat16 (kind "V"). Attribute reads only: ops call it per call."""
    dtype = np.dtype(dtype)
    return dtype.itemsize == 2 and dtype.kind in "fV"


@dataclass(frozen=True)
class Policy:
    """A model's precision policy.

    Attributes:
        name: one of :data:`POLICIES`.
        variable_dtype: the dtype of parameters, gradients and optimizer state.
        compute_dtype: the dtype layers compute in (== ``variable_dtype`` unless
            mixed).
    """

    name: str
    variable_dtype: np.dtype
    compute_dtype: np.dtype

    @property
    def mixed(self) -> bool:
        return self.compute_dtype != self.variable_dtype

    @property
    def default_loss_scale(self):
        """``"dynamic"`` for ``mixed_float16`` (float16's range needs it), else None."""
        return "dynamic" if self.name == "mixed_float16" else None

    def __repr__(self) -> str:
        return f"Policy({self.name!r})"


def get(precision, dtype) -> Policy:
    """The policy ``precision`` (a name from :data:`POLICIES` or a :class:`Policy`)
    for a model of ``dtype``. ValueError for an unknown name, or for a mixed policy
    with a model dtype other than float32 (the master weights are float32)."""
    if isinstance(precision, Policy):
        precision = precision.name
    if precision not in POLICIES:
        raise ArgumentError(f"precision must be one of {POLICIES}, got {precision!r}")
    dtype = np.dtype(dtype)
    if precision == "float32":
        return Policy(precision, dtype, dtype)
    if dtype != np.float32:
        raise ArgumentError(
            f"precision={precision!r} keeps float32 master weights: it needs "
            f"dtype='float32', got dtype={dtype.name!r}"
        )
    half = bfloat16() if precision == "mixed_bfloat16" else np.dtype(np.float16)
    return Policy(precision, dtype, half)
