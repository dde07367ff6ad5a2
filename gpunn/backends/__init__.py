"""Backends: where the math runs. The one place that chooses between CPU and GPU.

``get_backend("cpu" | "gpu" | "auto")`` returns a backend object; layers, losses,
optimizers and models only ever call its ops. ``import gpunn`` never imports CuPy: it is
imported here on first use of ``"gpu"`` or ``"auto"``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os

from gpunn.backends.numpy_backend import NumpyBackend
from gpunn.errors import ArgumentError, BackendUnavailableError

__all__ = ["BACKEND_NAMES", "ENV_VAR", "NumpyBackend", "get_backend", "gpu_status"]

logger = logging.getLogger("gpunn")

BACKEND_NAMES = ("cpu", "gpu", "auto")
ENV_VAR = "GPUNN_BACKEND"
_GPU_FIX = (
    "install CuPy for your CUDA driver with pip install 'gpunn[cuda12x]' "
    "(CUDA 12 driver) or 'gpunn[cuda13x]' (CUDA 13), check that nvidia-smi sees a GPU, "
    "or use backend='cpu'"
)


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[object | None, str]:
    """Returns ``(CupyBackend class or None, reason)`` for this process, probed once."""
    try:
        module = importlib.import_module("gpunn.backends.cupy_backend")
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc})"
    except Exception as exc:  # noqa: BLE001 - a broken CuPy install raises anything
        return None, f"CuPy failed to import ({type(exc).__name__}: {exc})"
    reason = module.probe()
    if reason is not None:
        return None, reason
    return module.CupyBackend, "CuPy and a CUDA device are usable"


@functools.cache
def _instance(cls):
    return cls()


def get_backend(backend=None) -> NumpyBackend:
    """Returns the backend for ``backend``: ``"cpu"``, ``"gpu"``, ``"auto"``, a backend
    object (returned as is) or None (then env ``GPUNN_BACKEND``, else ``"auto"``).

    ``"auto"`` picks the GPU when CuPy imports and a device runs a kernel, else the CPU,
    and logs one line saying which and why. ``"gpu"`` without a usable GPU raises
    :class:`~gpunn.errors.BackendUnavailableError` saying how to fix it.
    """
    if isinstance(backend, NumpyBackend):
        return backend
    source = "argument backend"
    if backend is None:
        backend, source = os.environ.get(ENV_VAR) or "auto", f"env {ENV_VAR}"
    name = backend.lower() if isinstance(backend, str) else backend
    if name not in BACKEND_NAMES:
        raise ArgumentError(
            f"{source} must be one of {', '.join(BACKEND_NAMES)}, got {backend!r}"
        )
    if name == "cpu":
        return _instance(NumpyBackend)
    _use_this_ranks_gpu()
    gpu_cls, reason = gpu_status()
    if name == "gpu":
        if gpu_cls is None:
            raise BackendUnavailableError(
                f"backend='gpu' needs CuPy and a usable NVIDIA GPU, but {reason}; "
                f"to fix: {_GPU_FIX}"
            )
        return _instance(gpu_cls)
    if gpu_cls is None:
        logger.info("gpunn backend: cpu (NumPy), because %s", reason)
        return _instance(NumpyBackend)
    gpu = _instance(gpu_cls)
    logger.info(
        "gpunn backend: gpu (CuPy on %s), because %s", gpu.device_name(), reason
    )
    return gpu


def _use_this_ranks_gpu() -> None:
    """In a data-parallel launch, makes GPU ``local rank % device count`` current
    before CuPy touches one (one GPU per rank; with ``CUDA_VISIBLE_DEVICES`` set to
    one device per rank there is nothing to choose)."""
    from gpunn.distributed import ranks as dist_world

    if not dist_world.enabled():
        return
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - no CuPy or no driver: gpu_status says why
        return
    if count > 1:
        cupy.cuda.Device(dist_world.local_rank() % count).use()
