"""The three sources of an epoch's device batches.

Each source has ``batches(order, first, batch_size, dp)``: an iterator of ``(x, y, w,
size)`` on the model's backend, ``w`` None without sample weights, ``size`` the rows
of the whole batch (``x`` is this rank's shard of it when ``dp`` is given), starting
at batch ``first`` of the epoch; ``order`` comes from ``draw_order(rng)`` (or is None
without shuffling).

- :class:`ArraySource`: arrays already on the device (the data is moved once); each
  batch is a slice, or a gather through the epoch's permutation, on the device.
- :class:`ChunkedSource`: a memory-mapped array read chunk by chunk
  (:mod:`gpunn.data.chunks`) on a reading thread (targets checked there), handed to
  the device whole by the backend's prefetcher, cast and checked there and cut into
  batches as in-memory data is.
- :class:`IterableSource`: an iterable of ``(x, y)`` / ``(x, y, sample_weight)``
  batches, each checked on the reading thread, through the same prefetcher.
"""

from __future__ import annotations

import itertools
from collections.abc import Sized

import numpy as np

from gpunn.data import chunks
from gpunn.errors import ArgumentTypeError

__all__ = ["ArraySource", "ChunkedSource", "IterableSource"]

CHUNK_BYTES = 64 * 2**20  # bytes of features per chunk of a memory-mapped array


def _shard(arrays, size: int, dp):
    """This rank's rows of a whole batch (views)."""
    if dp is None:
        return (*arrays, size)
    lo, hi = dp.shard(size)
    return (*(None if a is None else a[lo:hi] for a in arrays), size)


class ArraySource:
    """Arrays ``(X, y, w)`` already on the model's device (``y``/``w`` may be None)."""

    kind = "array"

    def __init__(self, model, X, y=None, w=None):
        self.model, self.data = model, (X, y, w)
        self.n_samples = len(X)

    def loop_config(self) -> dict:
        return {}

    def draw_order(self, rng):
        return rng.permutation(self.n_samples)

    def steps(self, batch_size: int) -> int:
        return -(-self.n_samples // batch_size)

    def first_targets(self):
        return self.data[1]

    def rows(self, lo: int, hi: int) -> ArraySource:
        arrays = (None if a is None else a[lo:hi] for a in self.data)
        return ArraySource(self.model, *arrays)

    def batches(self, order, first: int, batch_size: int, dp=None):
        backend, data, n = self.model.backend, self.data, self.n_samples
        order = None if order is None else backend.asarray(order)
        take = chunks.rows_of(backend.take_rows)
        for start in range(first * batch_size, n, batch_size):
            stop = min(start + batch_size, n)
            size = stop - start
            if dp is not None:  # this rank's shard of the global batch
                lo, hi = dp.shard(size)
                start, stop = start + lo, start + hi
            yield (*take(data, order, start, stop), size)


class ChunkedSource:
    """A memory-mapped ``X`` (``numpy.memmap``, e.g. ``numpy.load(path,
    mmap_mode="r")``) with targets and weights (memory-mapped or not) read in
    chunks of ``chunk_rows`` rows, never whole.

    Args:
        model: the model (built; compiled when ``checker.targets``).
        arrays: ``(X, y, w)``, host arrays of equal length (``y``/``w`` may be None).
        checker: the :class:`~gpunn.data.checks.PieceChecker` of each chunk.
        chunk_rows: rows per chunk; None: :data:`CHUNK_BYTES` worth of features in
            the model's dtype, a multiple of ``batch_size``.
        batch_size: the batch size it will be read with (for ``chunk_rows``).
        offset: the row of the whole array where ``arrays`` begin (for errors).
    """

    kind = "memmap"

    def __init__(self, model, arrays, checker, chunk_rows=None, batch_size=1, offset=0):
        self.model, self.arrays, self.checker = model, arrays, checker
        self.n_samples, self.offset = len(arrays[0]), offset
        if chunk_rows is None:
            row = arrays[0].shape[1] * model.dtype.itemsize
            chunk_rows = max(CHUNK_BYTES // row // batch_size, 1) * batch_size
        self.chunk_rows = int(chunk_rows)

    def loop_config(self) -> dict:
        return {"source": self.kind, "chunk_rows": self.chunk_rows}

    def draw_order(self, rng) -> chunks.ChunkOrder:
        return chunks.draw_order(self.n_samples, self.chunk_rows, rng)

    def steps(self, batch_size: int) -> int:
        return -(-self.n_samples // batch_size)

    def first_targets(self):
        """The targets of the first chunk in file order (metrics take a constant
        from them, the same at every epoch and resume), on the device."""
        hi = min(self.chunk_rows, self.n_samples)
        return self.model.backend.asarray(self._read(0, hi)[1])

    def rows(self, lo: int, hi: int) -> ChunkedSource:
        arrays = tuple(None if a is None else a[lo:hi] for a in self.arrays)
        chunk = self.chunk_rows
        return ChunkedSource(
            self.model, arrays, self.checker, chunk, 1, self.offset + lo
        )

    def batches(self, order, first: int, batch_size: int, dp=None):
        """Chunks go to the device whole (read ahead by the prefetcher, the copy
        of the next overlapping the compute on this one); there each is cast,
        checked, and cut into batches through its row order, as in-memory data."""
        backend = self.model.backend
        plan = chunks.plan(self.n_samples, self.chunk_rows, order, first * batch_size)
        host = (self._read(lo, hi) for _, lo, hi, _ in plan)
        take = chunks.rows_of(backend.take_rows)
        with backend.prefetch(host) as device:
            pieces = self._on_device(plan, device, order)
            for batch in chunks.cut(
                pieces, batch_size, take, chunks.joined(backend.xp)
            ):
                yield _shard(batch, len(batch[0]), dp)

    def _on_device(self, plan, device, order):
        """``(arrays, index, start)`` of each chunk, its features cast and checked
        on the device and its row order there."""
        backend = self.model.backend
        for (chunk, lo, hi, start), (x, y, w) in zip(plan, device):
            first = self.offset + lo
            x = self.checker.device(x, first, self._where(first, hi - lo))
            index = (
                None if order is None else backend.asarray(order.rows(chunk, hi - lo))
            )
            yield (x, y, w), index, start

    def _read(self, lo: int, hi: int) -> tuple:
        """Rows ``lo..hi-1`` as read (the features still memory-mapped: the
        prefetcher's staging copies them), targets and weights checked."""
        X, y, w = (None if a is None else a[lo:hi] for a in self.arrays)
        first = self.offset + lo
        return self.checker.host(X, y, w, first, self._where(first, hi - lo))

    @staticmethod
    def _where(first: int, rows: int) -> str:
        return f"rows {first}-{first + rows - 1} of the memory-mapped array"


class IterableSource:
    """An iterable of batches: ``(x, y)`` or ``(x, y, sample_weight)`` (lists as
    tuples; for ``predict`` also ``x`` alone), read on a thread, checked batch by
    batch, never shuffled.

    With ``steps`` each epoch takes that many batches from one iterator kept across
    epochs (Keras' ``steps_per_epoch``); without, each epoch is one pass of
    ``iter(data)``. :attr:`ran_out` tells whether the last epoch got fewer batches
    than ``steps`` (or none).
    """

    kind = "iterable"
    n_samples = None

    def __init__(self, model, data, checker, steps=None):
        self.model, self.data, self.checker = model, data, checker
        self.steps_per_epoch = steps
        self._iterator = None
        self._peeked = []  # the first item, read to build the model
        self.counted = None  # batches in the last whole epoch
        self.ran_out = False

    def loop_config(self) -> dict:
        return {"source": self.kind, "steps_per_epoch": self.steps_per_epoch}

    def draw_order(self, rng):
        return None

    def steps(self, batch_size: int) -> int | None:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        if isinstance(self.data, Sized):
            return len(self.data)
        return self.counted

    def peek(self) -> tuple:
        """The first batch's raw ``(x, y, w)`` (kept for the first epoch); None
        when the iterable is empty."""
        if not self._peeked:
            iterator = iter(self.data)
            item = next(iterator, None)
            if item is None:
                return None
            self._iterator, self._peeked = iterator, [item]
        return unpack(self._peeked[0], self.checker.targets)

    def first_targets(self):
        return None  # metrics prepare from the first batch themselves

    def batches(self, order, first: int, batch_size: int = 0, dp=None):
        self.ran_out = False
        host = self._host_batches(self._epoch_items(), first)
        with self.model.backend.prefetch(host) as device:
            for batch in device:
                yield _shard(batch, len(batch[0]), dp)

    def _epoch_items(self):
        if self.steps_per_epoch is None and not self._peeked:
            self._iterator = iter(self.data)  # one pass of a fresh iterator
        elif self._iterator is None:
            self._iterator = iter(self.data)
        items = itertools.chain(self._peeked, self._iterator)
        self._peeked = []
        if self.steps_per_epoch is not None:
            items = itertools.islice(items, self.steps_per_epoch)
        return items

    def _host_batches(self, items, skip: int):
        count, row = 0, 0
        for count, item in enumerate(items, 1):
            if count <= skip:  # a resumed epoch: the batches done before
                continue
            x, y, w = unpack(item, self.checker.targets)
            where = f"batch {count - 1} of the epoch, from its row {row}"
            batch = self.checker(x, y, w, row, where)
            row += len(batch[0])
            yield batch
        expected = self.steps_per_epoch
        self.ran_out = count == 0 or (expected is not None and count < expected)
        if expected is None and count:
            self.counted = count


def unpack(item, targets: bool) -> tuple:
    """``(x, y, w)`` of one batch item (``y``, ``w`` None when absent)."""
    if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
        parts = (*item, None, None)[:3]
        if targets and parts[1] is None:
            raise ArgumentTypeError(
                "each batch must be (x, y) or (x, y, sample_weight) when targets are "
                f"needed, got a {type(item).__name__} of {len(item)}"
            )
        return parts
    if not targets and not isinstance(item, (tuple, list, dict, str, bytes)):
        return item, None, None
    raise ArgumentTypeError(
        "each batch must be a tuple (x, y) or (x, y, sample_weight), got "
        f"{type(item).__name__}"
    )


def is_memmap(x) -> bool:
    return isinstance(x, np.memmap)
