"""Peak memory of one contender while it is built and takes its first steps.

- GPU, CuPy (gpunn, the GEMM floor): every allocation from CuPy's default pool goes
  through a wrapper that records the pool's bytes in use right after it, so the
  peak is exact; the result is that peak minus the bytes in use before.
- GPU, torch: ``torch.cuda.max_memory_allocated`` after a reset, minus the bytes
  allocated before.
- CPU, every side: the C heap's bytes in use (glibc's ``mallinfo2``: in-use chunks
  plus mmapped blocks, where NumPy's and torch's CPU arrays live), sampled every
  0.2 ms by a thread; the peak minus the bytes in use before. Memory freed and reused
  does not count twice, as it would in the resident set; a peak shorter than a sample
  can be missed. Without glibc (macOS, musl) the resident set's growth is used
  instead, which is approximate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


@functools.cache
def _mallinfo2():
    """glibc's ``mallinfo2`` (2.33 and later), or None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


def heap_in_use() -> int | None:
    """Bytes the C heap has handed out and not taken back, or None without glibc."""
    fn = _mallinfo2()
    if fn is None:
        return None
    info = fn()
    return info.uordblks + info.hblkhd


def resident_set() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


class HostPeak:
    """Context manager: ``peak_bytes`` is the growth of ``heap_in_use`` (else of the
    resident set) seen inside it; ``method`` says which; None when neither exists."""

    interval_s = 0.0002

    def __init__(self):
        self.peak_bytes = None
        self.read = heap_in_use if heap_in_use() is not None else resident_set
        self.method = "heap" if self.read is heap_in_use else "rss"

    def __enter__(self):
        self._base = self._peak = self.read()
        if self._base is None:
            return self
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, self.read())

    def __exit__(self, *exc) -> None:
        if self._base is None:
            return
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self._peak, self.read()) - self._base


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
