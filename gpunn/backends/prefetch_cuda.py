"""The GPU prefetcher: pinned host buffers, a copy stream, double-buffered.

The reading thread copies each host batch (a memory-mapped chunk, or an iterable's
batch) into one of ``depth`` pinned (page-locked) host buffers. The consumer's thread
issues the host-to-device copy of batch ``i + 1`` on a separate non-blocking CUDA
stream *before* it hands out batch ``i``, so the copy runs while batch ``i``
computes. Ordering is kept by CUDA events, never by waiting
on the host in the consumer:

- when a batch is handed out (not before: the previous batch's compute is queued
  until then), the compute stream (the current stream) waits for the event recorded
  after the batch's copy, so no kernel reads a batch before it lands;
- the copy into a device buffer waits for the event the compute stream recorded when
  the consumer moved past the batch that buffer held last (two device buffers, used
  in turn), so no copy overwrites a batch still being computed on;
- the reading thread waits (on the host, off the consumer's thread) for the copy out
  of a pinned buffer to finish before it writes that buffer again.

A device batch is valid until the consumer asks for the next one (work queued on
the compute stream before that is safe): the training loop uses each batch within
its step, and :func:`gpunn.data.chunks.cut` copies the rows a batch carries over
from one chunk to the next. This module does not import CuPy: the
CUDA calls come from ``cuda`` (:class:`CudaCalls`, built by the CuPy backend), so the
ordering logic is testable with a simulated device.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpunn.backends.prefetch import _END, Prefetcher

__all__ = ["CudaCalls", "PinnedPrefetcher"]


@dataclass(frozen=True)
class CudaCalls:
    """The CUDA operations the prefetcher uses (CuPy's, on a GPU).

    Attributes:
        stream: ``() -> stream``, a non-blocking stream with ``wait_event(e)`` and
            ``synchronize()``.
        event: ``() -> event`` with ``record(stream)`` and ``synchronize()``.
        current_stream: ``() -> stream`` the consumer computes on.
        empty_pinned: ``(shape, dtype) -> numpy.ndarray`` in page-locked memory.
        empty: ``(shape, dtype) -> device array`` with ``set(host, stream=s)``.
    """

    stream: object
    event: object
    current_stream: object
    empty_pinned: object
    empty: object


class PinnedPrefetcher(Prefetcher):
    """:class:`~gpunn.backends.prefetch.Prefetcher` through pinned memory and a
    copy stream (see the module docstring). ``depth`` pinned buffers, >= 2."""

    def __init__(self, cuda: CudaCalls, batches, depth: int = 2):
        super().__init__(batches, max(depth, 2))
        self._cuda = cuda
        self._copy_stream = cuda.stream()
        self._host = [None] * self.depth  # per pinned slot: its buffers
        self._copied = [None] * self.depth  # per pinned slot: its last copy's event
        self._device = [None, None]  # the two device slots: their buffers
        self._consumed = [None, None]  # per device slot: compute done with it
        self._staged = self._issued = 0

    def __iter__(self):
        self._start()
        try:
            following = self._issue_next()
            while following is not _END:
                current, following = following, self._issue_next()
                target, batch, copied = current
                # only now: a wait enqueued earlier would hold back the compute
                # still being queued for the batch before
                self._cuda.current_stream().wait_event(copied)
                yield batch
                self._mark_consumed(target)
        finally:
            self.close()

    def _issue_next(self):
        item = self._take()
        return item if item is _END else self._issue(item)

    # ------------------------------------------------------------ reader thread
    def _stage(self, batch):
        slot = self._staged % self.depth
        self._staged += 1
        if self._copied[slot] is not None:  # recorded before the slot was released
            self._copied[slot].synchronize()
        buffers = _fitted(self._host[slot], batch, self._cuda.empty_pinned)
        self._host[slot] = buffers
        views = _views(buffers, batch)
        for view, array in zip(views, batch):
            if array is not None:
                view[...] = array
        return slot, views

    # ------------------------------------------------------------ consumer thread
    def _issue(self, staged):
        slot, host = staged
        cuda, stream = self._cuda, self._copy_stream
        target = self._issued % 2
        self._issued += 1
        if self._consumed[target] is not None:
            stream.wait_event(self._consumed[target])
        buffers = _fitted(self._device[target], host, cuda.empty)
        self._device[target] = buffers
        device = _views(buffers, host)
        for dst, src in zip(device, host):
            if src is not None:
                dst.set(src, stream=stream)
        copied = cuda.event()
        copied.record(stream)
        self._copied[slot] = copied
        self._free.release()  # the reader may refill this pinned slot after `copied`
        return target, tuple(device), copied

    def _mark_consumed(self, target: int) -> None:
        event = self._cuda.event()
        event.record(self._cuda.current_stream())
        self._consumed[target] = event

    def _released(self) -> None:
        self._copy_stream.synchronize()  # no copy may outlive its buffers


def _fitted(buffers, batch, empty):
    """Buffers (one per batch entry) with room for ``batch``'s rows: ``buffers``
    when they have it, else new ones of ``empty``."""
    if (
        buffers is not None
        and len(buffers) == len(batch)
        and all(
            (b is None) == (a is None)
            and (a is None or (b.shape[1:], b.dtype) == (a.shape[1:], a.dtype))
            and (a is None or b.shape[0] >= a.shape[0])
            for b, a in zip(buffers, batch)
        )
    ):
        return buffers
    return [None if a is None else empty(a.shape, a.dtype) for a in batch]


def _views(buffers, batch) -> list:
    return [None if a is None else b[: a.shape[0]] for b, a in zip(buffers, batch)]
