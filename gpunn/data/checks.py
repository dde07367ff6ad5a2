"""Validating streamed data piece by piece, with the errors whole arrays get.

A batch of an iterable is checked on the host as it is read (on the reading thread):
feature count, dtype, NaN and infinity after the cast to the model's dtype, labels
against the loss, sample weights. A memory-mapped chunk is checked in two halves: its
targets and weights on the reading thread; its features, once on the device, cast
there and checked for NaN and infinity (the shape and dtype were checked before any
read), so the host only copies them. The error is the one
``fit`` raises for a whole array, with indices made absolute (rows of the whole
memory-mapped array, or of the epoch for an iterable) and the rows of the piece
appended, e.g. ``LabelError: y must hold class labels in [0, 3) ..., got 7 at index
70001 (rows 65536-131071 of the memory-mapped y)``.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np

from gpunn import inputs
from gpunn.backends import get_backend
from gpunn.data import weights
from gpunn.errors import GpunnError, InvalidInputError

__all__ = ["PieceChecker", "located"]

_INDEX = re.compile(r"at index (\d+)\b(?!,)")
_PAIR = re.compile(r"at index \((\d+), (\d+)\)")
_ROW = re.compile(r"\brow (\d+) sums")


class PieceChecker:
    """Checks and casts pieces of one dataset for ``model`` (built, compiled when
    ``targets``).

    Args:
        model: the model the data is for.
        names: the argument names of ``(x, y, sample_weight)``.
        targets: whether pieces carry targets (fit, evaluate) or not (predict).
        class_weight: the class-weight vector (``(n_classes,)`` host array of the
            model's dtype) to fold into the sample weights, or None.
        min_rows: the fewest rows a piece may have (BatchNorm trains on 2).
    """

    def __init__(self, model, names, targets=True, class_weight=None, min_rows=1):
        self.model, self.names, self.targets = model, names, targets
        self.class_weight, self.min_rows = class_weight, min_rows
        self.cpu = get_backend("cpu")

    def __call__(self, x, y=None, w=None, first_row: int = 0, where: str = ""):
        """``(x, y, w)`` as host arrays of the model's dtype (labels int64; ``y``
        and ``w`` None when absent); ``first_row`` is the absolute row of the
        piece's first row, ``where`` describes the piece for errors."""
        with _located(first_row, where):
            x = inputs.features(
                self.cpu, x, self.model.dtype, self.model.input_dim, self.names[0]
            )
            return (x, *self._targets(len(x), y, w))

    def host(self, x, y=None, w=None, first_row: int = 0, where: str = ""):
        """The host half of a memory-mapped chunk's checks: ``x`` as read (its
        dtype and shape were checked before reading; bfloat16 widened), ``y`` and
        ``w`` checked and prepared as by :meth:`__call__`."""
        with _located(first_row, where):
            return (inputs.widened(x), *self._targets(len(x), y, w))

    def device(self, x, first_row: int = 0, where: str = ""):
        """The device half: ``x`` (on the model's backend, as read) cast to the
        model's dtype there and checked for NaN and infinity after the cast."""
        backend = self.model.backend
        with _located(first_row, where), np.errstate(over="ignore"):
            x = backend.asarray(x, dtype=self.model.dtype)
            inputs.check_finite(backend, x, self.names[0])
        return x

    def _targets(self, n: int, y, w) -> tuple:
        if not self.targets:
            return None, None
        model, (_, y_name, w_name) = self.model, self.names
        cpu, dtype = self.cpu, model.dtype
        y = inputs.targets(cpu, y, model.loss, model.output_dim, n, dtype, y_name)
        w = inputs.sample_weights(cpu, w, n, dtype, w_name)
        if self.class_weight is not None:
            w = weights.apply(cpu.xp, self.class_weight, model.loss, y, w)
        if n < self.min_rows:
            raise InvalidInputError(
                f"a training batch of {n} sample(s), but the model needs at "
                f"least {self.min_rows} per batch in training (BatchNorm)"
            )
        return y, w


@contextlib.contextmanager
def _located(first_row: int, where: str):
    try:
        yield
    except GpunnError as error:
        raise located(error, first_row, where) from None


def located(error: GpunnError, first_row: int, where: str) -> GpunnError:
    """``error`` again (same class) with indices shifted by ``first_row`` and
    ``where`` appended in parentheses."""
    message = str(error)
    if first_row:
        shift = lambda m: f"at index {int(m[1]) + first_row}"
        pair = lambda m: f"at index ({int(m[1]) + first_row}, {m[2]})"
        message = _PAIR.sub(pair, _INDEX.sub(shift, message))
        message = _ROW.sub(lambda m: f"row {int(m[1]) + first_row} sums", message)
    if where:
        message = f"{message} ({where})"
    found = type(error)(message)
    found.__cause__ = error.__cause__
    return found
