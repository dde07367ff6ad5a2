"""Block tables of a flat arena's tensors, for the segmented optimizer kernels.

LARS, LAMB and :meth:`~gpunn.backends.ops_optim.OptimOps.segment_norms` work per
tensor (segment) of the flat arena. Their kernels get a table that splits the
segments into chunks of at most :data:`CHUNK` elements, each chunk inside one
tensor: a block takes chunk ``e`` (elements ``entry_start[e]`` to
``entry_start[e + 1]`` of tensor ``entry_seg[e]``), so it reads its tensor's trust
ratio once instead of an int64 segment id per element, and writes one partial sum per
chunk that a second kernel adds in a fixed order (deterministic, no atomics).

The table is built on the host from ``starts`` (one small device-to-host copy) the
first time a layout is used, then cached by :class:`TableCache`: an optimizer passes
the same ``starts`` array every step (``gpunn.optim.large_batch.segment_layout``
builds it once at bind), so later steps never wait for the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 1024  # elements per table entry: 4 per thread at 256 threads per block


@dataclass(frozen=True)
class SegmentTable:
    """The chunks of a flat buffer's segments, on the device (int64 arrays).

    Attributes:
        entry_start: ``(n_entries + 1,)`` first element of each chunk, then the end.
        entry_seg: ``(n_entries,)`` the segment of each chunk.
        seg_entry: ``(n_segments + 1,)`` the first chunk of each segment, then
            ``n_entries``.
        n_entries, n_segments: their counts.
        whole: whether the segments cover the whole buffer (``starts[0] == 0``).
    """

    entry_start: object
    entry_seg: object
    seg_entry: object
    n_entries: int
    n_segments: int
    whole: bool


def build_table(xp, starts, n: int, chunk: int = CHUNK) -> SegmentTable | None:
    """The table of ``n`` elements split at ``starts`` (host integers), on ``xp``;
    None unless ``starts`` is a non-empty, strictly increasing run of offsets in
    ``[0, n)``: the reference (``add.reduceat``) defines other cases (repeated or
    decreasing starts), which its code handles."""
    starts = np.asarray(starts).astype(np.int64, copy=False)
    if starts.ndim != 1 or starts.size == 0 or starts[0] < 0 or starts[-1] >= n:
        return None
    if np.any(np.diff(starts) <= 0):
        return None
    chunks = -(-np.diff(np.append(starts, n)) // chunk)
    seg_entry = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
    n_entries = int(seg_entry[-1])
    entry_seg = np.repeat(np.arange(starts.size, dtype=np.int64), chunks)
    offset = (np.arange(n_entries, dtype=np.int64) - seg_entry[entry_seg]) * chunk
    entry_start = np.append(starts[entry_seg] + offset, np.int64(n))
    return SegmentTable(
        xp.asarray(entry_start),
        xp.asarray(entry_seg),
        xp.asarray(seg_entry),
        n_entries,
        int(starts.size),
        bool(starts[0] == 0),
    )


class TableCache:
    """The tables of the last few layouts, keyed by the ``starts`` array object.

    An entry keeps its ``starts`` array alive, so the key (``id``) cannot be reused
    by another array while the entry exists. A layout's arrays are not to be changed
    in place once used (``segment_layout`` never does).
    """

    def __init__(self, size: int = 8):
        self.size = size
        self._entries: dict[int, tuple] = {}

    def get(self, backend, starts, n: int) -> SegmentTable | None:
        """The table of ``starts`` over ``n`` elements (see :func:`build_table`)."""
        hit = self._entries.get(id(starts))
        if hit is not None and hit[0] is starts and hit[1] == n:
            return hit[2]
        table = build_table(backend.xp, backend.to_numpy(starts), n)
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[id(starts)] = (starts, n, table)
        return table
