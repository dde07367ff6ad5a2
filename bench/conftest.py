"""pytest-benchmark suites of gpunn's fused ops and training steps (``pytest bench/``).

Every benchmark runs on every available backend (the ``backend`` fixture; the GPU is
skipped with a reason when there is none). Each timed call ends with a device
synchronization, and a call made before timing compiles any kernel, so compilation is
never timed. Each result carries what a floor needs in ``extra_info`` (bytes moved,
GEMM FLOPs, the GEMM floor's time), and the run ends with a table of each result as a
percentage of its floor: the measured copy bandwidth of the backend for memory-bound
ops, the step's own GEMMs timed alone for training steps.
"""

from __future__ import annotations

import numpy as np
import pytest
from suite import COPY_BYTES, RESULTS, median_seconds, usable_backend


@pytest.fixture(scope="session", params=["cpu", "gpu"])
def backend(request):
    return usable_backend(request.param)


@pytest.fixture(scope="session")
def copy_rate(backend) -> float:
    """The backend's measured device-to-device copy rate, bytes read plus written per
    second (median of 5 copies of 256 MiB)."""
    a = backend.zeros(COPY_BYTES // 4, np.float32) + 1
    b = backend.xp.empty_like(a)

    def copy():
        b[...] = a

    return 2 * COPY_BYTES / median_seconds(backend, copy, 5)


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    write = terminalreporter.write_line
    write("")
    write("gpunn: each result against its floor")
    write(f"{'benchmark':<58}{'median ms':>11}{'rate':>14}{'% of floor':>12}")
    for r in RESULTS:
        median = r["median"]
        if r["bytes_moved"] is not None:
            rate = f"{r['bytes_moved'] / median / 1e9:.1f} GB/s"
            pct = 100 * r["bytes_moved"] / median / r["copy_bytes_per_s"]
        elif r["flops"] is not None:
            rate = f"{r['flops'] / median / 1e12:.3f} TFLOP/s"
            pct = 100 * r["gemm_floor_s"] / median
        else:
            continue
        write(f"{r['name'][:57]:<58}{median * 1e3:>11.3f}{rate:>14}{pct:>11.1f}%")
    write(
        "floors: copy bandwidth measured here (read + write) for the ops; the "
        "step's own GEMMs alone for training steps"
    )
