"""Memory-mapped arrays read chunk by chunk, and the order an epoch visits them in.

The rows ``0..n-1`` are cut into chunks of ``chunk_rows`` consecutive rows (the last
may be shorter). Without shuffling an epoch reads the chunks in file order and the
rows in order. With shuffling it draws two things from the model's generator at the
start of the epoch: a permutation of the chunks, then one 64-bit key; chunk ``k``'s
rows are visited in the order ``numpy.random.default_rng([key, k]).permutation(m)``
(``m`` its length). The epoch's row order is the concatenation, over the permuted
chunks, of each chunk's permuted rows, and the batches are consecutive runs of
``batch_size`` rows of it (a batch may span two chunks). So each chunk is one
sequential read, the generator's draws do not grow with ``n``, and the order is
reproducible and restored exactly on resume (the generator's state at the start of
the epoch is checkpointed, as for in-memory data). :func:`epoch_order` returns it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ChunkOrder", "draw_order", "epoch_order", "host_batches"]


@dataclass(frozen=True)
class ChunkOrder:
    """One shuffled epoch: the chunk permutation and the key of the in-chunk ones."""

    chunks: np.ndarray
    key: int

    def rows(self, chunk: int, length: int) -> np.ndarray:
        """The order of the ``length`` rows of ``chunk`` (indices into it)."""
        return np.random.default_rng([self.key, int(chunk)]).permutation(length)


def n_chunks(n_samples: int, chunk_rows: int) -> int:
    return -(-n_samples // chunk_rows)


def draw_order(n_samples: int, chunk_rows: int, rng) -> ChunkOrder:
    """Draws one epoch's order from ``rng`` (the model's generator)."""
    chunks = rng.permutation(n_chunks(n_samples, chunk_rows))
    return ChunkOrder(chunks, int(rng.integers(0, 2**63)))


def epoch_order(n_samples: int, chunk_rows: int, rng) -> np.ndarray:
    """The row order of one shuffled epoch over ``n_samples`` rows in chunks of
    ``chunk_rows``, drawn from ``rng`` as ``fit`` draws it from the model's generator
    (a ``(n_samples,)`` int64 array; it holds ``n`` numbers, so it is for checks and
    small data: ``fit`` never builds it)."""
    order = draw_order(n_samples, chunk_rows, rng)
    parts = []
    for chunk in order.chunks:
        lo = int(chunk) * chunk_rows
        length = min(n_samples, lo + chunk_rows) - lo
        parts.append(lo + order.rows(chunk, length))
    return np.concatenate(parts).astype(np.int64)


def host_batches(read, n_samples, chunk_rows, batch_size, order=None, first_row=0):
    """Yields one epoch's host batches (tuples of arrays, None entries kept).

    Args:
        read: ``(lo, hi) -> tuple`` of the rows ``lo..hi-1``, validated and cast.
        n_samples, chunk_rows, batch_size: the data's rows, chunk and batch sizes.
        order: a :class:`ChunkOrder` (shuffled) or None (file order).
        first_row: skip this many rows of the epoch's order (a resumed epoch, at a
            batch boundary); chunks wholly before it are not read.
    """
    sequence = range(n_chunks(n_samples, chunk_rows)) if order is None else order.chunks
    carry, carried, position = [], 0, 0
    for chunk in sequence:
        lo = int(chunk) * chunk_rows
        hi = min(n_samples, lo + chunk_rows)
        start, position = max(first_row - position, 0), position + hi - lo
        if start >= hi - lo:
            continue
        arrays = read(lo, hi)
        index = None if order is None else order.rows(chunk, hi - lo)
        while start < hi - lo:
            stop = min(start + batch_size - carried, hi - lo)
            piece = _rows(arrays, index, start, stop)
            start = stop
            if not carried and len(piece[0]) == batch_size:
                yield piece
                continue
            carry.append(piece)
            carried += len(piece[0])
            if carried == batch_size:
                yield _joined(carry)
                carry, carried = [], 0
    if carry:
        yield _joined(carry)


def _rows(arrays, index, start: int, stop: int) -> tuple:
    if index is None:
        return tuple(None if a is None else a[start:stop] for a in arrays)
    rows = index[start:stop]
    return tuple(None if a is None else np.take(a, rows, axis=0) for a in arrays)


def _joined(pieces) -> tuple:
    """The pieces of one batch (from consecutive chunks) as one tuple of arrays."""
    if len(pieces) == 1:
        return pieces[0]
    joined = []
    for parts in zip(*pieces):
        if parts[0] is None:
            joined.append(None)
            continue
        joined.append(np.concatenate(_same_form(parts)))
    return tuple(joined)


def _same_form(parts):
    """Target pieces in one form: integer labels next to probability rows (a chunk
    of one-hot rows becomes labels, one of soft rows stays rows) become one-hot
    rows of the rows' dtype."""
    rows = [p for p in parts if p.ndim == 2 and p.dtype.kind == "f"]
    if not rows or all(p.ndim == 2 for p in parts):
        return parts
    width, dtype = rows[0].shape[1], rows[0].dtype
    return [p if p.ndim == 2 else np.eye(width, dtype=dtype)[p] for p in parts]
