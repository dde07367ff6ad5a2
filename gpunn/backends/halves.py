"""The reference semantics of 16-bit arrays: an op given float16 or bfloat16 arrays
computes on their float32 values and rounds its result back once.

That is what the kernels do with a 16-bit type (load, compute in float, store), and
what a GEMM with float32 accumulation does, so the reference and the kernels agree
within the 16-bit rows of the tolerances. :func:`in_float32` marks a reference op
that follows this rule; the op is 16-bit when its first argument (the data: ``x`` or
``dy``) is. Arrays that are already float32 (the float32 gradient arena an op writes in
place, float32 statistics) pass through untouched.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from gpunn.precision import is_half

FLOAT32 = np.dtype(np.float32)


def half_dtype(arrays) -> np.dtype | None:
    """The one 16-bit float dtype among ``arrays`` (None if there is none);
    ValueError when they mix float16 and bfloat16."""
    found = {a.dtype for a in arrays if _is_half(getattr(a, "dtype", None))}
    if len(found) > 1:
        names = sorted(d.name for d in found)
        raise ValueError(f"arrays must not mix 16-bit float types, got {names}")
    return found.pop() if found else None


def _is_half(dtype) -> bool:
    return dtype is not None and is_half(dtype)


def _widen(value):
    if _is_half(getattr(value, "dtype", None)):
        return value.astype(FLOAT32)
    return value


def in_float32(rounded=(0,), writes=(), rounded_writes=()):
    """Decorates a reference op: with 16-bit array arguments, those arguments are
    given as float32, and the results at positions ``rounded`` (of a tuple result;
    a single result is position 0) that are float32 arrays are rounded to the 16-bit
    dtype. Other results (float32 statistics, masks) are returned as computed.
    ``writes`` names the arguments the op writes in place (gradients, running
    statistics): those must not be 16-bit (ValueError), since a float32 copy would
    take the writes. Of those, ``rounded_writes`` are rounded through the 16-bit
    dtype after the op, as a GEMM with a 16-bit output stores them (a Dense
    layer's weight gradient: cuBLAS writes the 16-bit product, float32 accumulated,
    and gpunn stores it into the float32 arena, as torch.autocast does)."""

    def decorate(op):
        signature = inspect.signature(op)

        @functools.wraps(op)
        def wrapper(self, *args, **kwargs):
            dtype = getattr(args[0], "dtype", None) if args else None
            if dtype is None or dtype.itemsize != 2:  # the float32/64 fast path
                return op(self, *args, **kwargs)
            half = half_dtype([*args, *kwargs.values()])
            bound = signature.bind(self, *args, **kwargs).arguments
            for name in writes:
                value = bound.get(name)
                if value is not None and half_dtype([value]) is not None:
                    raise ValueError(
                        f"{name} must have dtype float32 (it is written in place), "
                        f"got {value.dtype}"
                    )
            args = [_widen(a) for a in args]
            kwargs = {k: _widen(v) for k, v in kwargs.items()}
            result = op(self, *args, **kwargs)
            for name in rounded_writes:
                value = bound.get(name)
                if value is not None:
                    with np.errstate(over="ignore"):  # past the range: inf, as a GPU
                        value[...] = value.astype(half)
            if not isinstance(result, tuple):
                return _narrow(result, half) if 0 in rounded else result
            return tuple(
                _narrow(r, half) if i in rounded else r for i, r in enumerate(result)
            )

        return wrapper

    return decorate


def _narrow(value, half):
    if getattr(value, "dtype", None) == FLOAT32:
        with np.errstate(over="ignore"):  # past the 16-bit range: inf, as a GPU does
            return value.astype(half)
    return value
