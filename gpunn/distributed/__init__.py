"""Synchronous data-parallel training over MPI (CPU) and NCCL (GPUs).

Launch the same script on N processes, the standard way::

    mpiexec -n 4 python train.py          # or: mpiexec -n 4 gpunn train ...

``fit`` then trains one model on all of them: ``batch_size`` is the global batch,
each rank computes the gradient of its shard and one all-reduce over the flat
gradient arena averages them, so every rank takes the same optimizer step (see
:mod:`gpunn.distributed.data_parallel`). Rank and world size come from MPI; nothing
else is configured. Run with one process, the same script trains alone and gpunn
never imports ``mpi4py``. ``GPUNN_DISTRIBUTED`` (``auto`` / ``0`` / ``1``) overrides
the detection (:mod:`gpunn.distributed.ranks`).
"""

from __future__ import annotations

from gpunn.distributed.data_parallel import DataParallel, shard_bounds
from gpunn.distributed.ranks import (
    ENV_VAR,
    DistributedError,
    World,
    enabled,
    is_primary,
    launched_size,
    local_rank,
    rank,
    size,
    world,
)

__all__ = [
    "ENV_VAR",
    "DataParallel",
    "DistributedError",
    "World",
    "active",
    "data_parallel",
    "enabled",
    "is_primary",
    "launched_size",
    "local_rank",
    "rank",
    "shard_bounds",
    "size",
    "world",
]


def data_parallel(model) -> DataParallel | None:
    """The :class:`DataParallel` of ``model`` when this process trains data-parallel,
    else None (one process: ``fit`` is unchanged)."""
    if not enabled():
        return None
    found = getattr(model, "_data_parallel", None)
    if found is None or found.model is not model:
        found = DataParallel(model, world())
        model._data_parallel = found
    return found


def active(model) -> DataParallel | None:
    """The :class:`DataParallel` that ``fit`` set up for ``model``, or None."""
    return getattr(model, "_data_parallel", None) if enabled() else None
