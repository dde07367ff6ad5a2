"""Timing helpers of the pytest-benchmark suites (see ``conftest.py`` here): the one
place results are recorded, so the suites and the conftest's summary share them."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from gpunn.backends import get_backend, gpu_status

RESULTS: list[dict] = []
COPY_BYTES = 256 * 2**20


def random(backend, shape, dtype=np.float32, seed=0, scale=1.0):
    """Standard-normal values times ``scale`` on ``backend`` (never zeros: they can
    time faster than real data)."""
    host = np.random.default_rng(seed).standard_normal(shape) * scale
    return backend.asarray(host.astype(dtype))


def median_seconds(backend, fn, repeats: int) -> float:
    """Median seconds of ``fn()`` plus a synchronization, after one untimed call."""
    fn()
    backend.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        backend.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    benchmark,
    backend,
    fn,
    *,
    bytes_moved=None,
    flops=None,
    floor_s=None,
    rounds=None,
    copy_rate=None,
):
    """Benchmarks ``fn`` (then a device synchronization) after one untimed call and
    records its floor: ``bytes_moved`` (with the ``copy_rate`` fixture's value) or
    ``flops`` with ``floor_s``, the GEMM floor's seconds. ``rounds`` fixes the number
    of rounds (for slow calls); else pytest-benchmark decides."""
    fn()
    backend.synchronize()

    def timed():
        fn()
        backend.synchronize()

    if rounds is None:
        benchmark(timed)
    else:
        benchmark.pedantic(timed, rounds=rounds, warmup_rounds=0)
    info = {
        "backend": backend.name,
        "bytes_moved": bytes_moved,
        "flops": flops,
        "gemm_floor_s": floor_s,
        "copy_bytes_per_s": copy_rate,
    }
    benchmark.extra_info.update({k: v for k, v in info.items() if v is not None})
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        RESULTS.append({"name": benchmark.name, "median": stats.stats.median, **info})


def usable_backend(name: str):
    """The backend ``name`` with TF32 off; skips the test when it is not usable."""
    if name == "gpu":
        cls, reason = gpu_status()
        if cls is None:
            pytest.skip(f"GPU backend not usable: {reason}")
    found = get_backend(name)
    found.set_tf32(False)
    return found
