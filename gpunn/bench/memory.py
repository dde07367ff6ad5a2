"""Peak memory of one contender while it is built and takes its first steps.

- GPU, CuPy (gpunn, the GEMM floor): every allocation from CuPy's default pool goes
  through a wrapper that records the pool's bytes in use right after it, so the
  peak is exact; the result is that peak minus the bytes in use before.
- GPU, torch: ``torch.cuda.max_memory_allocated`` after a reset, minus the bytes
  allocated before.
- CPU, every side: the process's resident set (``/proc/self/statm``), sampled every
  millisecond by a thread; the peak minus the resident set before. Approximate: memory
  an earlier contender freed can be reused without growing the resident set, and
  samples can miss a peak shorter than a millisecond. None where ``/proc`` is absent.
"""

from __future__ import annotations

import os
import threading

_STATM = "/proc/self/statm"


class RssPeak:
    """Context manager: ``peak_bytes`` is the resident-set growth seen inside it."""

    interval_s = 0.001

    def __init__(self):
        self.peak_bytes = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        with open(_STATM) as f:
            return int(f.read().split()[1]) * self._page

    def __enter__(self):
        if not os.path.exists(_STATM):
            return self
        self._base = self._peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, self._rss())

    def __exit__(self, *exc) -> None:
        if not os.path.exists(_STATM):
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())
        self.peak_bytes = self._peak - self._base


class CupyPoolPeak:
    """Context manager: ``peak_bytes`` is the most bytes of CuPy's default pool in
    use inside it, beyond those in use when it began."""

    def __init__(self):
        self.peak_bytes = None

    def __enter__(self):
        import cupy

        self._cupy = cupy
        pool = cupy.get_default_memory_pool()
        base = pool.used_bytes()
        self._peak = base

        def malloc(size):
            memory = pool.malloc(size)
            self._peak = max(self._peak, pool.used_bytes())
            return memory

        self._base = base
        cupy.cuda.set_allocator(malloc)
        return self

    def __exit__(self, *exc) -> None:
        pool = self._cupy.get_default_memory_pool()
        self._cupy.cuda.set_allocator(pool.malloc)
        self.peak_bytes = self._peak - self._base


class TorchCudaPeak:
    """Context manager: ``peak_bytes`` from torch's CUDA caching allocator."""

    def __init__(self):
        self.peak_bytes = None

    def __enter__(self):
        import torch

        self._torch = torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self._base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        self._torch.cuda.synchronize()
        self.peak_bytes = self._torch.cuda.max_memory_allocated() - self._base
