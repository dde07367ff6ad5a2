"""Arrays of other libraries (PyTorch, JAX, CuPy, NumPy...) through DLPack.

:func:`to_host` gives the NumPy array of an object with ``__dlpack__``: the object's
own memory (zero-copy) when it lives in host memory, else one copy to the host made
by its library (DLPack's ``dl_device``). bfloat16, which NumPy's ``from_dlpack``
does not take, is read from the DLPack tensor's bits and widened to float32 (exact:
a bfloat16 is the top half of a float32). The GPU backend has its own import
(``cupy.from_dlpack``) and uses :func:`tensor_info` for its bfloat16 fallback.
"""

from __future__ import annotations

import ctypes

import numpy as np

from gpunn.errors import ArgumentTypeError

__all__ = ["CPU", "CUDA", "device_of", "tensor_info", "to_host", "widen_bfloat16"]

# DLPack device types and the bfloat type code (dlpack.h)
CPU, CUDA, CUDA_HOST, CUDA_MANAGED = 1, 2, 3, 13
HOST_DEVICES = (CPU, CUDA_HOST)
_BFLOAT = 4


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16)]  # fmt: skip


class _Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _Device),
        ("ndim", ctypes.c_int32),
        ("dtype", _DataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def device_of(x) -> tuple[int, int] | None:
    """``(DLPack device type, device id)`` of ``x``, or None when it has none."""
    try:
        kind, index = x.__dlpack_device__()
        return int(kind), int(index)
    except Exception:  # noqa: BLE001 - not a DLPack producer, or a broken one
        return None


def tensor_info(capsule) -> dict:
    """What a legacy ``"dltensor"`` capsule describes: ``data`` (address of the
    first element), ``shape``, ``strides`` in bytes, ``code``/``bits``/``lanes`` of
    the dtype and ``device``. The capsule stays unconsumed: its producer frees the
    tensor when the capsule goes, so keep it alive while the memory is read."""
    tensor = _Tensor.from_address(_get_pointer(capsule, b"dltensor"))
    ndim, dtype = tensor.ndim, tensor.dtype
    shape = tuple(tensor.shape[i] for i in range(ndim))
    itemsize = dtype.bits * dtype.lanes // 8
    if tensor.strides:
        strides = tuple(tensor.strides[i] * itemsize for i in range(ndim))
    else:  # NULL strides: row-major
        strides = tuple(int(np.prod(shape[i + 1 :])) * itemsize for i in range(ndim))
    return {
        "data": (tensor.data or 0) + tensor.byte_offset,
        "shape": shape,
        "strides": strides,
        "code": dtype.code,
        "bits": dtype.bits,
        "lanes": dtype.lanes,
        "device": (tensor.device.device_type, tensor.device.device_id),
    }


def is_bfloat16(info: dict) -> bool:
    return (info["code"], info["bits"], info["lanes"]) == (_BFLOAT, 16, 1)


def widen_bfloat16(xp, bits):
    """float32 values of bfloat16 ``bits`` (a uint16 array of ``xp``): exact."""
    return xp.left_shift(bits.astype(xp.uint32), 16).view(xp.float32)


def to_host(x, name: str) -> np.ndarray:
    """``x`` (with ``__dlpack__``) as a NumPy array: zero-copy from host memory,
    else copied to the host once by its library; bfloat16 as float32.

    Raises:
        ArgumentTypeError: naming ``name`` and the type when ``x`` cannot be read
            (a device its library cannot copy from, a dtype NumPy has not).
    """
    device = device_of(x)
    on_host = device is None or device[0] in HOST_DEVICES
    try:
        return np.from_dlpack(x) if on_host else np.from_dlpack(x, device="cpu")
    except (BufferError, RuntimeError, TypeError, ValueError) as error:
        found = _bfloat16_host(x, on_host)
        if found is None and not on_host and hasattr(x, "__cuda_array_interface__"):
            found = _copied_by_get(x)  # a CuPy without DLPack's dl_device
        if found is not None:
            return found
        where = "" if on_host else f" on DLPack device {device}"
        fix = "convert it to a NumPy array of float32 first"
        if not on_host:
            fix = (
                "move it to the host first (x.get() for CuPy, x.cpu() for "
                "PyTorch) or build the model with backend='gpu'"
            )
        raise ArgumentTypeError(
            f"{name}: cannot read this {type(x).__name__}{where} through DLPack "
            f"({error}); {fix}"
        ) from None


def _copied_by_get(x) -> np.ndarray | None:
    """A CUDA array's host copy through its ``get()`` (CuPy's), else None."""
    get = getattr(x, "get", None)
    if not callable(get):
        return None
    try:
        found = get()
    except Exception:  # noqa: BLE001 - not CuPy's get after all
        return None
    return found if isinstance(found, np.ndarray) else None


def _bfloat16_host(x, on_host: bool) -> np.ndarray | None:
    """float32 host values of a bfloat16 DLPack tensor, else None."""
    try:
        capsule = x.__dlpack__() if on_host else x.__dlpack__(dl_device=(CPU, 0))
        info = tensor_info(capsule)
    except Exception:  # noqa: BLE001 - not readable this way either
        return None
    if not is_bfloat16(info) or info["device"][0] not in HOST_DEVICES:
        return None
    shape, strides = info["shape"], info["strides"]
    if 0 in shape:
        return np.zeros(shape, np.float32)
    low = sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
    high = sum(max(0, (n - 1) * s) for n, s in zip(shape, strides)) + 2
    memory = (ctypes.c_char * (high - low)).from_address(info["data"] + low)
    base = np.frombuffer(memory, np.uint16)
    bits = np.lib.stride_tricks.as_strided(
        base[-low // 2 :], shape=shape, strides=strides
    )
    values = widen_bfloat16(np, bits)  # a new array: read while the capsule lives
    del capsule
    return values
