"""Who am I among the ranks: the launch is detected from the environment, MPI is
imported only when there is more than one rank (or the user forces it).

``mpiexec -n N python script.py`` (MPICH, Open MPI, Intel MPI, MVAPICH) and ``srun``
set variables naming the world size; a plain ``python script.py`` sets none, and gpunn
then never imports ``mpi4py``. ``GPUNN_DISTRIBUTED`` overrides the detection:
``auto`` (the default), ``0`` / ``off`` (every process trains alone, e.g. a
hyperparameter sweep under ``mpiexec``), ``1`` / ``on`` (data-parallel even with one
rank: the NCCL path on a single GPU).
"""

from __future__ import annotations

import json
import os

import numpy as np

from gpunn.errors import GpunnError

ENV_VAR = "GPUNN_DISTRIBUTED"
# (world size, rank, local rank) variables of the common launchers, in that order
_LAUNCHERS = (
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"),  # MPICH hydra, Intel MPI
    ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_LOCAL_RANK"),
    ("PMIX_SIZE", "PMIX_RANK", "PMIX_LOCAL_RANK"),
)
_MPI_FIX = (
    "install the MPI extra (pip install 'gpunn[mpi]': mpi4py and MPICH from PyPI), or "
    f"set {ENV_VAR}=0 to train each process on its own"
)


class DistributedError(GpunnError, RuntimeError):
    """Data-parallel training cannot start or the ranks disagree (weights that
    diverged, a checkpoint of another world size, a missing MPI)."""


def launched_size() -> int:
    """The world size the launcher announces in the environment (1 when none)."""
    for size, _, _ in _LAUNCHERS:
        if os.environ.get(size, "").isdigit():
            return int(os.environ[size])
    return 1


def local_rank() -> int:
    """This process's rank on its node, from the launcher (0 when unknown): which
    GPU it takes."""
    for _, _, local in _LAUNCHERS:
        if os.environ.get(local, "").isdigit():
            return int(os.environ[local])
    for _, rank, _ in _LAUNCHERS:  # one node: the world rank is the local one
        if os.environ.get(rank, "").isdigit():
            return int(os.environ[rank])
    return 0


def local_size(world_size: int) -> int:
    """How many ranks share this node, from the launcher (else ``world_size``: one
    node assumed, the safe guess for sharing cores)."""
    for var in (
        "MPI_LOCALNRANKS",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MV2_COMM_WORLD_LOCAL_SIZE",
    ):
        if os.environ.get(var, "").isdigit():
            return max(int(os.environ[var]), 1)
    return max(world_size, 1)


def mode() -> str:
    """``"auto"``, ``"off"`` or ``"on"`` from ``GPUNN_DISTRIBUTED``."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower()
    found = {"auto": "auto", "": "auto", "0": "off", "off": "off", "false": "off"}
    found.update({"1": "on", "on": "on", "true": "on"})
    if value not in found:
        raise ValueError(
            f"env {ENV_VAR} must be auto, 0/off or 1/on, got {os.environ[ENV_VAR]!r}"
        )
    return found[value]


def enabled() -> bool:
    """Whether ``fit`` trains data-parallel in this process."""
    setting = mode()
    return setting == "on" or (setting == "auto" and launched_size() > 1)


class World:
    """The ranks of this run over MPI's ``COMM_WORLD`` (a single rank without MPI
    when ``GPUNN_DISTRIBUTED=1`` runs one plain process).

    Attributes:
        rank, size: this process's rank and the number of ranks.
        comm: the mpi4py communicator, or None for a single rank without MPI.
    """

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()

    # host collectives: NumPy buffers, never pickled Python objects
    def allreduce_host_(self, array: np.ndarray) -> np.ndarray:
        """Sums a contiguous host array over the ranks, in place."""
        if self.comm is not None and self.size > 1:
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        return array

    def broadcast_host_(self, array: np.ndarray, root: int = 0) -> np.ndarray:
        if self.comm is not None and self.size > 1:
            self.comm.Bcast(array, root=root)
        return array

    def allgather_json(self, value) -> list:
        """Every rank's JSON-able ``value``, in rank order (sent as UTF-8 bytes)."""
        data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
        if self.comm is None or self.size == 1:
            return [json.loads(data.tobytes())]
        sizes = np.zeros(self.size, np.int64)
        self.comm.Allgather(np.array([data.size], np.int64), sizes)
        out = np.empty(int(sizes.sum()), np.uint8)
        self.comm.Allgatherv(data, (out, sizes))
        cuts = np.cumsum(sizes)
        return [json.loads(part.tobytes()) for part in np.split(out, cuts[:-1])]

    def broadcast_json(self, value, root: int = 0):
        """Rank ``root``'s JSON-able ``value`` on every rank."""
        return self.allgather_json(value if self.rank == root else None)[root]


_WORLD: World | None = None


def world() -> World:
    """The run's :class:`World`, set up on first use (MPI is initialised then)."""
    global _WORLD
    if _WORLD is None:
        _WORLD = World(_mpi_comm())
    return _WORLD


def _mpi_comm():
    needed = launched_size() > 1
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as exc:  # mpi4py 4 without an MPI library
        if not needed:  # raises RuntimeError ("cannot load MPI library")
            return None  # GPUNN_DISTRIBUTED=1 in one plain process: a world of one
        raise DistributedError(
            f"this process was launched as one of {launched_size()} MPI ranks, but "
            f"mpi4py cannot be imported ({type(exc).__name__}: {exc}); to fix: "
            f"{_MPI_FIX}"
        ) from None
    return MPI.COMM_WORLD


def rank() -> int:
    """This process's rank: 0 when not training data-parallel. Use it to let one
    process print or save (``if gpunn.distributed.rank() == 0: model.save(...)``)."""
    return world().rank if enabled() else 0


def size() -> int:
    """The number of data-parallel ranks (1 when not distributed)."""
    return world().size if enabled() else 1


def is_primary() -> bool:
    """True on the rank that prints and writes files (rank 0, or every plain
    process)."""
    return rank() == 0
