"""Weight initializers, by name or as callables.

An initializer is called as ``init(shape, rng, fan_in=..., fan_out=...)`` and returns a
float64 host array; ``rng`` is the model's seeded ``numpy.random.Generator`` (no global
RNG is touched), so the same seed gives the same weights on CPU and GPU. A plain
callable ``fn(shape, rng)`` works too.

For a dense kernel of shape ``(n_in, n_out)``, ``fan_in = n_in`` and ``fan_out = n_out``;
its bias gets the same fans.

| name | distribution |
|---|---|
| ``zeros`` / ``ones`` / ``constant(value)`` | constant |
| ``normal(mean=0, std=0.05)`` | N(mean, std^2) |
| ``uniform`` | U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's ``nn.Linear`` default |
| ``glorot_uniform`` | U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010) |
| ``glorot_normal`` | N(0, 2 / (fan_in + fan_out)), as ``torch.nn.init.xavier_normal_`` |
| ``he_uniform`` | U(-a, a), a = sqrt(6 / fan_in) (He et al. 2015) |
| ``he_normal`` | N(0, 2 / fan_in), as ``kaiming_normal_`` |
| ``orthogonal(gain=1)`` | a (semi-)orthogonal matrix (Saxe et al. 2014) |
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np

from gpunn.errors import ArgumentError, ArgumentTypeError


class Initializer:
    """Base class: subclasses implement ``sample(shape, rng, fan_in, fan_out)``."""

    def __call__(self, shape, rng: np.random.Generator, *, fan_in=None, fan_out=None):
        shape = tuple(int(d) for d in shape)
        fan_in = fan_in if fan_in is not None else (shape[0] if shape else 1)
        fan_out = fan_out if fan_out is not None else (shape[-1] if shape else 1)
        out = np.asarray(self.sample(shape, rng, fan_in, fan_out), dtype=np.float64)
        return out.reshape(shape)

    def sample(self, shape, rng, fan_in, fan_out):
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def sample(self, shape, rng, fan_in, fan_out):
        return np.full(shape, self.value)


class Normal(Initializer):
    def __init__(self, mean: float = 0.0, std: float = 0.05):
        if not std >= 0:
            raise ArgumentError(f"std must be >= 0, got {std}")
        self.mean, self.std = float(mean), float(std)

    def sample(self, shape, rng, fan_in, fan_out):
        return rng.normal(self.mean, self.std, size=shape)


class Uniform(Initializer):
    """U(-limit, limit); ``limit=None`` means 1/sqrt(fan_in)."""

    def __init__(self, limit: float | None = None):
        if limit is not None and not limit >= 0:
            raise ArgumentError(f"limit must be >= 0, got {limit}")
        self.limit = limit

    def sample(self, shape, rng, fan_in, fan_out):
        limit = self.limit if self.limit is not None else 1 / math.sqrt(max(fan_in, 1))
        return rng.uniform(-limit, limit, size=shape)


class VarianceScaling(Initializer):
    """Zero-mean with variance ``scale / fan``, uniform or normal: the family behind
    Glorot and He initialization."""

    def __init__(self, scale: float, mode: str, distribution: str):
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def sample(self, shape, rng, fan_in, fan_out):
        fan = fan_in if self.mode == "fan_in" else (fan_in + fan_out) / 2
        var = self.scale / max(fan, 1)
        if self.distribution == "uniform":
            limit = math.sqrt(3 * var)
            return rng.uniform(-limit, limit, size=shape)
        return rng.normal(0.0, math.sqrt(var), size=shape)


class Orthogonal(Initializer):
    """Rows or columns orthonormal (whichever are fewer), times ``gain``."""

    def __init__(self, gain: float = 1.0):
        self.gain = float(gain)

    def sample(self, shape, rng, fan_in, fan_out):
        if len(shape) < 2:
            raise ArgumentError(f"orthogonal needs a shape of >= 2 dims, got {shape}")
        rows, cols = shape[0], math.prod(shape[1:])
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # makes the distribution uniform (Mezzadri 2007)
        q = q if rows >= cols else q.T
        return self.gain * q


class _Plain(Initializer):
    """Wraps a user callable ``fn(shape, rng)``; what it returns must be finite real
    numbers, as many as ``shape`` holds (ArgumentError naming ``argument``
    otherwise)."""

    def __init__(self, fn, argument: str = "initializer"):
        self.fn, self.argument = fn, argument

    def sample(self, shape, rng, fan_in, fan_out):
        value = self.fn(shape, rng)
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is None or array.size != math.prod(shape):
            got = "shape " + str(array.shape) if array is not None else repr(value)
            raise ArgumentError(
                f"{self.argument} callable must return real numbers of shape "
                f"{tuple(shape)}, got {got[:80]}"
            )
        if not np.isfinite(array).all():
            raise ArgumentError(f"{self.argument} callable returned NaN or infinity")
        return array


def zeros() -> Initializer:
    return Constant(0.0)


def ones() -> Initializer:
    return Constant(1.0)


constant = Constant
normal = Normal
uniform = Uniform
orthogonal = Orthogonal


def glorot_uniform() -> Initializer:
    return VarianceScaling(1.0, "fan_avg", "uniform")


def glorot_normal() -> Initializer:
    return VarianceScaling(1.0, "fan_avg", "normal")


def he_uniform() -> Initializer:
    return VarianceScaling(2.0, "fan_in", "uniform")


def he_normal() -> Initializer:
    return VarianceScaling(2.0, "fan_in", "normal")


_BY_NAME: dict[str, Callable[[], Initializer]] = {
    "zeros": zeros,
    "ones": ones,
    "constant": Constant,
    "normal": Normal,
    "uniform": Uniform,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "orthogonal": Orthogonal,
}


def get(init, argument: str = "initializer") -> Initializer:
    """Returns the initializer for a name, an :class:`Initializer` or a callable
    ``fn(shape, rng)``."""
    if isinstance(init, Initializer):
        return init
    if init in _BY_NAME.values():  # a preset passed uncalled, e.g. he_normal
        return init()
    if isinstance(init, str):
        if init not in _BY_NAME:
            raise ArgumentError(
                f"{argument} must be one of {sorted(_BY_NAME)} or a callable, "
                f"got {init!r}"
            )
        return _BY_NAME[init]()
    if callable(init):
        _check_plain_signature(init, argument)
        return _Plain(init, argument)
    raise ArgumentTypeError(
        f"{argument} must be a name or a callable, got {type(init).__name__}"
    )


def _check_plain_signature(fn, argument: str) -> None:
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise ArgumentTypeError(
            f"{argument} callable must accept (shape, rng)"
        ) from None
    except ValueError:  # builtins without a signature: trust them
        pass
