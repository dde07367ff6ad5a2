"""Argument checks shared by the public API: each error names the argument, the
expected range and the value got. NumPy scalars are accepted like Python numbers.
Errors are gpunn's :class:`~gpunn.errors.ArgumentError` (a ValueError) and
:class:`~gpunn.errors.ArgumentTypeError` (a TypeError)."""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

from gpunn.errors import ArgumentError, ArgumentTypeError


def check_int(name: str, value, lo: int) -> int:
    """An integer >= ``lo`` (bools refused); returns it as int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ArgumentError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


def check_real(name: str, value, lo=None, hi=None, lo_open=False, hi_open=False):
    """A finite real number in the given interval; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(
            f"{name} must be a real number, got {type(value).__name__}"
        )
    value = float(value)
    bad = not math.isfinite(value)
    if lo is not None:
        bad |= value <= lo if lo_open else value < lo
    if hi is not None:
        bad |= value >= hi if hi_open else value > hi
    if bad:
        left = "(" if lo_open or lo is None else "["
        right = ")" if hi_open or hi is None else "]"  # infinities are refused
        lo_txt = "-inf" if lo is None else f"{lo:g}"
        hi_txt = "inf" if hi is None else f"{hi:g}"
        raise ArgumentError(
            f"{name} must be in {left}{lo_txt}, {hi_txt}{right}, got {value}"
        )
    return value


def check_bool(name: str, value) -> bool:
    """``True`` or ``False`` (NumPy bools too); a string such as ``"no"``, which
    Python would read as true, is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(
            f"{name} must be True or False, got {value!r} ({type(value).__name__})"
        )
    return bool(value)


def check_path(name: str, value) -> str | os.PathLike:
    """A file path: a ``str`` or ``os.PathLike`` (bytes and numbers refused)."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ArgumentTypeError(
            f"{name} must be a file path (str or os.PathLike), got {value!r} "
            f"({type(value).__name__})"
        )
    return value


def check_callable(name: str, value):
    """A callable (a function, a method, an object with ``__call__``)."""
    if not callable(value):
        raise ArgumentTypeError(
            f"{name} must be callable, got {value!r} ({type(value).__name__})"
        )
    return value
