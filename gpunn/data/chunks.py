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

__all__ = ["ChunkOrder", "cut", "draw_order", "epoch_order", "plan"]


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


def plan(n_samples: int, chunk_rows: int, order=None, first_row: int = 0) -> list:
    """The chunks one epoch reads, in order: ``[(chunk, lo, hi, start)]``, rows
    ``lo..hi-1`` of the array, of which the first ``start`` of the chunk's order are
    skipped (a resumed epoch, ``first_row`` rows into it); chunks wholly before
    ``first_row`` are left out.

    Args:
        n_samples, chunk_rows: the data's rows and the chunk size.
        order: a :class:`ChunkOrder` (shuffled) or None (file order).
        first_row: rows of the epoch's order already done (at a batch boundary).
    """
    sequence = range(n_chunks(n_samples, chunk_rows)) if order is None else order.chunks
    found, position = [], 0
    for chunk in sequence:
        lo = int(chunk) * chunk_rows
        hi = min(n_samples, lo + chunk_rows)
        start, position = max(first_row - position, 0), position + hi - lo
        if start < hi - lo:
            found.append((int(chunk), lo, hi, start))
    return found


def cut(pieces, batch_size: int, take, join):
    """Yields batches of ``batch_size`` rows (the last may be shorter) from chunks.

    Args:
        pieces: an iterator of ``(arrays, index, start)``: one chunk's arrays (a
            tuple, None entries kept), the order of its rows (None: as they are)
            and the rows of that order to skip. It is advanced only when the chunk
            before is used up; a chunk's arrays need to stay valid only until then
            (the rows a batch carries over are copied first).
        batch_size: rows per batch.
        take: ``(arrays, index, a, b) -> tuple``: rows ``a..b-1`` of the order.
        join: ``(list of tuples) -> tuple``: the pieces of a batch spanning chunks.
    """
    carry, carried = [], 0
    for arrays, index, start in pieces:
        rows = len(arrays[0])
        while start < rows:
            stop = min(start + batch_size - carried, rows)
            piece = take(arrays, index, start, stop)
            start = stop
            if not carried and len(piece[0]) == batch_size:
                yield piece
                continue
            # a copy, queued now: the chunk's buffer may be refilled once the next
            # chunk is asked for, before the batch is joined
            carry.append(tuple(None if a is None else a.copy() for a in piece))
            carried += len(piece[0])
            if carried == batch_size:
                yield join(carry)
                carry, carried = [], 0
    if carry:
        yield join(carry)


def rows_of(take_rows):
    """The ``take`` of :func:`cut`, also how in-memory data is batched: rows
    ``start..stop-1`` of ``index`` (None: of the arrays as they are), gathered by
    ``take_rows(array, rows)`` (the backend's)."""

    def take(arrays, index, start: int, stop: int) -> tuple:
        if index is None:
            return tuple(None if a is None else a[start:stop] for a in arrays)
        rows = index[start:stop]
        return tuple(None if a is None else take_rows(a, rows) for a in arrays)

    return take


def joined(xp):
    """The ``join`` of :func:`cut` for arrays of ``xp``."""

    def join(pieces) -> tuple:
        if len(pieces) == 1:
            return pieces[0]
        return tuple(
            None if parts[0] is None else xp.concatenate(_same_form(xp, parts))
            for parts in zip(*pieces)
        )

    return join


def _same_form(xp, parts):
    """Target pieces in one form: integer labels next to probability rows (a chunk
    of one-hot rows becomes labels, one of soft rows stays rows) become one-hot
    rows of the rows' dtype."""
    rows = [p for p in parts if p.ndim == 2 and p.dtype.kind == "f"]
    if not rows or all(p.ndim == 2 for p in parts):
        return parts
    width, dtype = rows[0].shape[1], rows[0].dtype
    return [p if p.ndim == 2 else xp.eye(width, dtype=dtype)[p] for p in parts]
