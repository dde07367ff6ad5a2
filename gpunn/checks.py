"""Argument checks shared by the public API: each error names the argument, the
expected range and the value got. NumPy scalars are accepted like Python numbers."""

from __future__ import annotations

import math
import numbers


def check_int(name: str, value, lo: int) -> int:
    """An integer >= ``lo`` (bools refused); returns it as int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


def check_real(name: str, value, lo=None, hi=None, lo_open=False, hi_open=False):
    """A finite real number in the given interval; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    bad = not math.isfinite(value)
    if lo is not None:
        bad |= value <= lo if lo_open else value < lo
    if hi is not None:
        bad |= value >= hi if hi_open else value > hi
    if bad:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        lo_txt = "-inf" if lo is None else f"{lo:g}"
        hi_txt = "inf" if hi is None else f"{hi:g}"
        raise ValueError(
            f"{name} must be in {left}{lo_txt}, {hi_txt}{right}, got {value}"
        )
    return value
