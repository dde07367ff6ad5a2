"""The backends that run gpunn's CUDA kernels, for the kernel parity tests.

``emulated``: :class:`~gpunn.backends.kernel_backend.KernelBackend` on NumPy arrays with
every ``kernels/*.cu`` file compiled for the CPU by ``tests/cuda_emu`` (g++ and a shim
that runs each block's threads as fibers), so CI runs the kernels' logic without a GPU.
``gpu``: the CuPy backend on a real device (marker ``gpu``).

The emulated grid is capped at a few blocks, so the parity sizes larger than one grid
take the grid-stride path there as they do on the GPU.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from conftest import gpu_skip_reason

from gpunn.backends import get_backend
from gpunn.backends.kernel_backend import KernelBackend
from gpunn.backends.kernels import KernelLibrary

ROOT = Path(__file__).resolve().parents[1]
EMULATED_MAX_BLOCKS = 3


def _emulator_compiler(source, half: bool):
    from cuda_emu import emulator

    defines = ("GPUNN_HALF",) if half else ()
    return emulator.load(ROOT / "kernels" / source.filename, ROOT / "kernels", defines)


class EmulatedBackend(KernelBackend):
    """The kernel ops on NumPy arrays, every kernel run by the CPU emulator."""

    name = "emulated"
    xp = np

    def __init__(self):
        self.kernels = KernelLibrary(_emulator_compiler, EMULATED_MAX_BLOCKS)


@functools.cache
def emulated_backend() -> EmulatedBackend:
    return EmulatedBackend()


def emulator_skip_reason():
    from cuda_emu import emulator

    return None if emulator.available() else "no C++ compiler for the CUDA emulator"


def kernel_backend_for(name: str):
    """The backend ``name`` ("emulated" or "gpu"), or pytest.skip with the reason."""
    if name == "gpu":
        if gpu_skip_reason():
            pytest.skip(f"GPU backend not usable: {gpu_skip_reason()}")
        return get_backend("gpu")
    if emulator_skip_reason():
        pytest.skip(emulator_skip_reason())
    return emulated_backend()


KERNEL_BACKENDS = ["emulated", pytest.param("gpu", marks=pytest.mark.gpu)]
