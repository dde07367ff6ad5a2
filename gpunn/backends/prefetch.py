"""Reading batches ahead of the training loop: the reference (CPU) prefetcher.

A prefetcher takes an iterator of *host batches* (tuples of NumPy arrays, ``None``
for an absent entry such as missing sample weights), made by :mod:`gpunn.data`:
reading a memory-mapped chunk, validating it, casting it to the model's dtype,
permuting it. It runs that iterator on a background thread, ``depth`` batches ahead
of the consumer, and yields the batches on its backend, in order, so the reading
overlaps the compute. An exception of the iterator is raised in the consumer when
it reaches that batch, with its own traceback.

On the CPU the host batch *is* the backend batch. The GPU backend stages each batch
in pinned host memory and copies it on a separate CUDA stream while the previous
batch computes (:mod:`gpunn.backends.prefetch_cuda`).

Use it as a context manager (``with backend.prefetch(batches) as it: for b in
it: ...``) or iterate it once; leaving early stops the thread after the batch it is
reading. The iterator is never advanced past what the thread has taken, so a
caller that hands in ``itertools.islice(it, k)`` consumes exactly ``k`` items.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

__all__ = ["Prefetcher"]

_END = object()


class _Failure:
    """An exception raised by the batch iterator, carried to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Yields the batches of ``batches`` (read ``depth`` ahead on a thread).

    Args:
        batches: an iterable of tuples of host arrays (or None entries).
        depth: batches read ahead of the one in use, >= 1. Default: 2.
    """

    def __init__(self, batches, depth: int = 2):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._batches = iter(batches)
        self.depth = depth
        self._free = threading.Semaphore(depth)
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ consumer side
    def __iter__(self):
        self._start()
        try:
            while (item := self._take()) is not _END:
                yield self._issue(item)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops the reading thread (after the batch it is reading) and waits for
        it; the batches it read ahead are dropped."""
        self._stop.set()
        self._free.release()  # a reader waiting for room wakes up and sees stop
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._released()

    def _start(self) -> None:
        if self._thread is not None or self._stop.is_set():
            raise RuntimeError("a Prefetcher is iterated once")
        self._thread = threading.Thread(
            target=self._read, name="gpunn-prefetch", daemon=True
        )
        self._thread.start()

    def _take(self):
        """The next staged batch (or ``_END``); re-raises the reader's error."""
        item = self._ready.get()
        if isinstance(item, _Failure):
            raise item.error
        return item

    # ------------------------------------------------------------ reader side
    def _read(self) -> None:
        try:
            while True:
                self._free.acquire()  # room for one more batch ahead
                if self._stop.is_set():
                    return
                batch = next(self._batches, _END)
                if batch is _END:
                    break
                self._ready.put(self._stage(batch))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            self._ready.put(_Failure(error))
            return
        self._ready.put(_END)

    # ------------------------------------------------------------ backend hooks
    def _stage(self, batch):
        """Reader thread: prepares a host batch for :meth:`_issue` (the GPU copies
        it into pinned memory). On the CPU a memory-mapped array (pages of a file)
        is read into memory here, so the consumer never waits for the disk; other
        arrays are kept as they are."""
        return tuple(np.array(a) if isinstance(a, np.memmap) else a for a in batch)

    def _issue(self, staged):
        """Consumer thread: the backend batch of a staged one. On the CPU it is the
        host batch; its room is given back at once (nothing is reused)."""
        self._free.release()
        return staged

    def _released(self) -> None:
        """Called by :meth:`close` once the thread has stopped: the GPU waits for
        copies in flight before its buffers go."""
