"""How many threads gpunn's CPU work may use, and keeping BLAS to that many.

The budget is ``GPUNN_NUM_THREADS`` when set, else the cores this process has been
given: its CPU affinity (``taskset``, Slurm, ``docker --cpuset-cpus``) and its cgroup
CPU quota (``docker --cpus``), whichever is smaller; data-parallel ranks on one node
split it (:func:`cap`). The optimizer's update threads use it, and ``fit`` keeps
BLAS (OpenBLAS, MKL, BLIS, through threadpoolctl) to it while it runs
(:func:`blas_limited`): a BLAS that starts one thread per core of the host, on a
machine where the process has two, runs many times slower than one that does not.
A BLAS already set lower (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``...) keeps
its setting.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os

from gpunn.errors import ArgumentError

logger = logging.getLogger("gpunn")

ENV = "GPUNN_NUM_THREADS"
_cap: int | None = None  # set by cap() (data-parallel ranks sharing a node)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, and its cgroup (v2)
    CPU quota rounded up when one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(min(cores, quota) if quota else cores, 1)


def _cgroup_quota() -> int | None:
    """``ceil(quota / period)`` from ``/sys/fs/cgroup/cpu.max``, or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as file:
            quota, period = file.read().split()[:2]
        return None if quota == "max" else max(math.ceil(int(quota) / int(period)), 1)
    except (OSError, ValueError):
        return None


def cap(n: int | None) -> None:
    """Caps the budget at ``n`` (ranks sharing a node share its cores); None lifts
    the cap."""
    global _cap
    _cap = None if n is None else max(int(n), 1)


def budget() -> int:
    """The threads gpunn's CPU work may use (see the module docstring).
    ArgumentError (a ValueError) naming ``GPUNN_NUM_THREADS`` when it is set to
    something other than an int >= 1."""
    text = os.environ.get(ENV, "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise ArgumentError(f"{ENV} must be an int >= 1, got {text!r}")
    else:
        n = usable_cores()
    return n if _cap is None else min(n, _cap)


@contextlib.contextmanager
def blas_limited():
    """Runs the block with every BLAS library loaded in the process limited to
    :func:`budget` threads (those set lower keep their setting), then restores
    them. Without threadpoolctl, runs it as it is."""
    n = budget()
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # a core dependency: only a broken install lands here
        logger.debug("gpunn: threadpoolctl missing, BLAS threads not limited")
        yield n
        return
    blas = ThreadpoolController().select(user_api="blas")
    over = [lib.filepath for lib in blas.lib_controllers if lib.num_threads > n]
    if not over:
        yield n
        return
    with blas.select(filepath=over).limit(limits=n):
        yield n
