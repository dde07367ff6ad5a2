"""The GPU backend: the reference ops of :class:`NumpyBackend` run on CuPy arrays.

This module imports cupy, so only :func:`gpunn.backends.get_backend` imports it, and only
when a GPU backend is asked for or probed. Ops that a fused CUDA kernel makes faster are
overridden here; every other op is the reference code with ``xp = cupy``.
"""

from __future__ import annotations

import cupy
import numpy as np

from gpunn.backends.numpy_backend import NumpyBackend


class CupyBackend(NumpyBackend):
    """Runs every op with CuPy on the current CUDA device."""

    name = "gpu"
    xp = cupy
    # a failed allocation from CuPy's memory pool; its message has the bytes asked
    # for, allocated so far and the pool limit (gpunn.faults.DeviceMemoryError keeps it)
    out_of_memory_errors = (cupy.cuda.memory.OutOfMemoryError,)

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
        """None: CuPy's cuRAND generators do not expose their state yet, so a
        restore (``lr_find``) leaves dropout and noise streams advanced on the GPU."""
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
