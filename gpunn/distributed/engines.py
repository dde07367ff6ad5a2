"""Collectives on the backend's arrays: MPI for NumPy arrays, NCCL for CuPy arrays.

An engine sums a flat array over the ranks in place (``allreduce_``) and copies rank
0's array to every rank (``broadcast_``). The NCCL engine keeps the data on the GPU:
its communicator is made from a unique id that rank 0 creates and MPI broadcasts, and
its calls run on CuPy's current stream, so they are ordered with the step's kernels
without a host synchronisation.
"""

from __future__ import annotations

import os

import numpy as np

from gpunn.backends import updates
from gpunn.distributed.ranks import DistributedError, World, local_size

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class MpiEngine:
    """Host arrays (the NumPy backend) through mpi4py's buffer interface.

    Ranks on one node share its cores: unless ``OMP_NUM_THREADS`` (or OpenBLAS's or
    MKL's variable) says otherwise, each rank's BLAS (through threadpoolctl) and
    optimizer-update threads are capped at ``cores // ranks on the node``. Without the
    cap each rank would start a thread per core, and the ranks would fight for them.
    """

    name = "mpi"

    def __init__(self, world: World):
        self.world = world
        if world.size > 1 and not any(os.environ.get(v) for v in _THREAD_VARS):
            share_cores(local_size(world.size))

    def allreduce_(self, array):
        return self.world.allreduce_host_(_contiguous(array))

    def broadcast_(self, array, root: int = 0):
        return self.world.broadcast_host_(_contiguous(array), root)


class NcclEngine:
    """Device arrays (the CuPy backend) through ``cupy.cuda.nccl``, one GPU per rank."""

    name = "nccl"

    def __init__(self, world: World):
        from cupy.cuda import nccl

        self.world, self._nccl = world, nccl
        uid = nccl.get_unique_id() if world.rank == 0 else None
        uid = world.broadcast_json(None if uid is None else list(uid))
        self.comm = nccl.NcclCommunicator(world.size, tuple(uid), world.rank)
        self._types = {
            np.dtype(np.float16): nccl.NCCL_FLOAT16,
            np.dtype(np.float32): nccl.NCCL_FLOAT32,
            np.dtype(np.float64): nccl.NCCL_FLOAT64,
            np.dtype(np.int64): nccl.NCCL_INT64,
        }

    def _args(self, array):
        import cupy

        array = _contiguous(array)
        if array.dtype not in self._types:
            raise TypeError(
                f"NCCL collectives take float16/32/64 or int64 arrays, got {array.dtype}"
            )
        stream = cupy.cuda.get_current_stream().ptr
        return array, array.data.ptr, array.size, self._types[array.dtype], stream

    def allreduce_(self, array):
        array, ptr, count, kind, stream = self._args(array)
        self.comm.allReduce(ptr, ptr, count, kind, self._nccl.NCCL_SUM, stream)
        return array

    def broadcast_(self, array, root: int = 0):
        array, ptr, count, kind, stream = self._args(array)
        self.comm.bcast(ptr, count, kind, root, stream)
        return array


def _contiguous(array):
    if not array.flags.c_contiguous:
        raise ValueError(
            "collectives need C-contiguous arrays (the flat arena is one), got a "
            f"strided array of shape {array.shape}"
        )
    return array


def engine_for(backend, world: World):
    """The engine for ``backend``'s arrays: NCCL for CuPy, MPI for NumPy."""
    if backend.name == "cpu":
        return MpiEngine(world)
    try:
        return NcclEngine(world)
    except ImportError as exc:
        raise DistributedError(
            f"data-parallel training on the GPU needs NCCL through CuPy "
            f"(cupy.cuda.nccl), but it cannot be imported ({exc}); install CuPy's "
            "CUDA libraries (pip install 'gpunn[cuda12x]') or train on the CPU"
        ) from None


def share_cores(ranks_on_node: int) -> int:
    """Caps this rank's BLAS and update threads at its share of the node's cores;
    returns the share."""
    threads = max(updates.usable_cores() // max(ranks_on_node, 1), 1)
    updates.limit_threads(threads)
    from threadpoolctl import threadpool_limits  # a dependency of gpunn

    threadpool_limits(limits=threads, user_api="blas")
    return threads
