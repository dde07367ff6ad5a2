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

from gpunn.backends import dlpack
from gpunn.backends.kernel_backend import KernelBackend
from gpunn.backends.kernels import BLOCK, KernelLibrary, cupy_compiler
from gpunn.backends.prefetch import Prefetcher
from gpunn.backends.prefetch_cuda import CudaCalls, PinnedPrefetcher
from gpunn.errors import ArgumentTypeError

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

    def from_dlpack(self, x, name: str = "x"):
        """A CuPy array from an object with ``__dlpack__``: zero-copy
        (``cupy.from_dlpack``) when it lives on the current GPU; a tensor in host
        memory is read zero-copy as NumPy and copied to the GPU once (by
        :meth:`asarray`), one on another GPU copied here once. bfloat16 comes as
        float32."""
        device = dlpack.device_of(x)
        if device is None or device[0] not in (dlpack.CUDA, dlpack.CUDA_MANAGED):
            return super().from_dlpack(x, name)
        try:
            found = cupy.from_dlpack(x)
        except (BufferError, RuntimeError, TypeError, ValueError) as error:
            found = _bfloat16_device(x)
            if found is None:
                raise ArgumentTypeError(
                    f"{name}: cannot read this {type(x).__name__} through DLPack "
                    f"({error}); convert it to a float32 array first"
                ) from None
        if found.dtype.kind == "V":  # CuPy's bfloat16 (ml_dtypes): widen exactly
            found = dlpack.widen_bfloat16(cupy, found.view(cupy.uint16))
        if found.device.id != cupy.cuda.Device().id:
            found = cupy.array(found, copy=True)  # peer copy to this model's GPU
        return found

    def prefetch(self, batches, depth: int = 2) -> Prefetcher:
        """The batches of ``batches`` on the GPU, double-buffered: pinned host
        buffers filled by a reading thread and host-to-device copies on their own
        stream overlapping the previous batch's compute (see
        :mod:`gpunn.backends.prefetch_cuda`)."""
        return PinnedPrefetcher(_cuda_calls(), batches, depth)

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


def _cuda_calls() -> CudaCalls:
    """CuPy's streams, events, pinned and device allocations, for the prefetcher."""
    import cupyx

    return CudaCalls(
        stream=lambda: cupy.cuda.Stream(non_blocking=True),
        event=lambda: cupy.cuda.Event(disable_timing=True),
        current_stream=lambda: cupy.cuda.get_current_stream(),
        empty_pinned=lambda shape, dtype: cupyx.empty_pinned(shape, dtype),
        empty=lambda shape, dtype: cupy.empty(shape, dtype),
    )


def _bfloat16_device(x):
    """float32 CuPy values of a bfloat16 tensor on this GPU read from its DLPack
    bits, for a CuPy that does not take bfloat16 through DLPack; else None."""
    stream = cupy.cuda.get_current_stream().ptr or 1  # 1: the legacy default
    try:
        capsule = x.__dlpack__(stream=stream)
        info = dlpack.tensor_info(capsule)
    except Exception:  # noqa: BLE001 - not readable this way either
        return None
    if not dlpack.is_bfloat16(info) or info["device"][1] != cupy.cuda.Device().id:
        return None
    shape, strides = info["shape"], info["strides"]
    span = sum((n - 1) * abs(s) for n, s in zip(shape, strides)) + 2
    if 0 in shape or min(strides, default=0) < 0:
        return None if 0 not in shape else cupy.zeros(shape, cupy.float32)
    memory = cupy.cuda.UnownedMemory(info["data"], span, capsule)
    pointer = cupy.cuda.MemoryPointer(memory, 0)
    bits = cupy.ndarray(shape, cupy.uint16, pointer, strides)
    values = dlpack.widen_bfloat16(cupy, bits)
    cupy.cuda.get_current_stream().synchronize()  # read before the capsule goes
    return values


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
