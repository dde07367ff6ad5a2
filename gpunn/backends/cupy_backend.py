"""The GPU backend: the kernel ops of :class:`KernelBackend` on CuPy arrays.

This module imports cupy, so only :func:`gpunn.backends.get_backend` imports it, and only
when a GPU backend is asked for or probed. Ops that a fused CUDA kernel makes faster are
overridden by the ``gpu_*`` mixins of :class:`KernelBackend` (compiled by NVRTC on first
use, see :mod:`gpunn.backends.kernels`); every other op is the reference code with
``xp = cupy``.
"""

from __future__ import annotations

import cupy
import numpy as np

from gpunn.backends.kernel_backend import KernelBackend
from gpunn.backends.kernels import BLOCK, KernelLibrary, cupy_compiler

# cuBLAS compute types of CuPy's matmul (cupy/_core/_routines_linalg)
_COMPUTE_TYPE_DEFAULT, _COMPUTE_TYPE_TF32 = 1, 7


class CupyBackend(KernelBackend):
    """Runs every op with CuPy on the current CUDA device, the hot ones as custom
    kernels. TF32 matmuls are off unless :meth:`set_tf32` turns them on."""

    name = "gpu"
    xp = cupy
    # a failed allocation from CuPy's memory pool; its message has the bytes asked
    # for, allocated so far and the pool limit (gpunn.faults.DeviceMemoryError keeps it)
    out_of_memory_errors = (cupy.cuda.memory.OutOfMemoryError,)

    def __init__(self):
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        # enough resident blocks to fill every SM; a grid-stride loop does the rest
        per_sm = max(props["maxThreadsPerMultiProcessor"] // BLOCK, 1)
        self.kernels = KernelLibrary(
            cupy_compiler, max_blocks=props["multiProcessorCount"] * per_sm
        )
        self.tf32 = False
        self.set_tf32(False)

    def set_tf32(self, enabled: bool) -> None:
        """Lets float32 matmuls use TF32 tensor cores (10-bit mantissa inputs, fp32
        accumulate; several times faster on Ampere and later) when ``enabled``. The
        setting is CuPy's, so it holds for the whole process; ``NVIDIA_TF32_OVERRIDE=0``
        in the environment forces it off."""
        from cupy._core import _routines_linalg

        setter = getattr(_routines_linalg, "set_compute_type", None)
        if setter is None:  # a CuPy without the switch: matmuls stay full float32
            if enabled:
                raise RuntimeError(
                    f"tf32=True needs CuPy's matmul compute-type switch, which "
                    f"CuPy {cupy.__version__} does not have; set CUPY_TF32=1 in the "
                    "environment before starting Python instead"
                )
            return
        compute = _COMPUTE_TYPE_TF32 if enabled else _COMPUTE_TYPE_DEFAULT
        setter(np.float32, compute)
        self.tf32 = bool(enabled)

    def asarray(self, x, dtype=None):
        """Moves ``x`` to the device; NumPy arrays are copied host-to-device once."""
        return cupy.asarray(x, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        return cupy.asnumpy(x)

    def _foreach_block(self, fn, arrays, hyper) -> None:
        """One pass over the whole arena: blocking only pays on a CPU."""
        fn(self.xp, *arrays, **hyper)

    def synchronize(self) -> None:
        cupy.cuda.get_current_stream().synchronize()

    def generator(self, seed: int):
        """A device generator seeded with ``seed`` (``cupy.random.default_rng``, cuRAND
        XORWOW): draws stay on the GPU, ``cupy.random``'s global state is untouched."""
        return cupy.random.default_rng(seed)

    def generator_state(self, generator):
        """None for CuPy's cuRAND generators, which do not expose their state (a
        restore leaves GaussianNoise streams advanced on the GPU); gpunn's own
        generators (dropout's) keep theirs, as on the CPU."""
        if hasattr(generator, "get_state"):
            return generator.get_state()
        return

    def device_name(self) -> str:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)


def probe() -> str | None:
    """Returns None when CuPy can run work on a GPU here, else the reason it cannot.

    Runs one tiny elementwise op, so a missing driver, device or NVRTC shows up here
    rather than in the middle of training.
    """
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError, missing libcuda, ...
        return f"CuPy found no usable CUDA driver ({type(exc).__name__}: {exc})"
    if count == 0:
        return "CuPy sees no CUDA device"
    try:
        (cupy.arange(4, dtype=cupy.float32) * 2).sum().get()
    except Exception as exc:  # noqa: BLE001 - NVRTC missing, no kernel image, ...
        return f"CuPy could not run a kernel ({type(exc).__name__}: {exc})"
    return None
