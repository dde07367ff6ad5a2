"""Runs gpunn's CUDA kernels on the CPU: each ``.cu`` file compiled by g++ with
``shim.h`` into a shared library, launched through ctypes.

``load(source, include_dir)`` returns a :class:`Module` whose ``get_function(name)``
is called like a ``cupy.RawKernel``: ``fn((grid,), (block,), args)``. Arguments are
NumPy arrays (passed as their data pointer) and NumPy scalars (passed by value as the
matching C type); a Python int/float/bool is refused, because CuPy would pass a Python
float as a C double and the project's launchers must cast every scalar. The emulator
cannot see a kernel's parameter types, so a scalar of the wrong width is not caught
here: the launchers' casts and the GPU parity tests are what check that.

Compiled libraries are cached in the temp directory under a hash of the sources,
the shim and the flags; each is written to a temp name and renamed, so parallel test
processes never load half a file.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SHIM = Path(__file__).with_name("shim.h")
FLAGS = (
    "-x",
    "c++",
    "-std=c++20",
    "-O1",
    "-fPIC",
    "-shared",
    "-fno-fast-math",
    "-ffp-contract=off",
    # each module keeps its own kernel registry: without this, g++ makes the static
    # of an inline function a process-wide unique symbol, and a module loaded later
    # would list (and launch) the kernels of the first
    "-fno-gnu-unique",
)
_SCALARS = {
    np.dtype(np.float16): ctypes.c_uint16,  # the bits of a __half (_Float16)
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
    np.dtype(np.int8): ctypes.c_int8,
    np.dtype(np.int16): ctypes.c_int16,
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.uint8): ctypes.c_uint8,
    np.dtype(np.uint16): ctypes.c_uint16,
    np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.bool_): ctypes.c_bool,
}


def available() -> bool:
    """Whether a C++ compiler for the emulator is on PATH."""
    return shutil.which("g++") is not None


def _digest(source: Path, include_dir: Path, defines) -> str:
    """sha256 of the source, the headers it can include, the shim and the flags."""
    headers = sorted({*include_dir.glob("*.cuh"), *include_dir.glob("*.h")})
    h = hashlib.sha256()
    for path in [source, SHIM, *headers]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update(repr((FLAGS, tuple(defines))).encode())
    return h.hexdigest()[:24]


def load(source: Path, include_dir: Path, defines=()) -> Module:
    """Compiles ``source`` (once; cached) and returns its kernels.

    Args:
        source: a ``.cu`` file.
        include_dir: the directory of its headers (``kernels/`` for ``common.cuh``).
        defines: preprocessor names to define, e.g. ``("GPUNN_HALF",)``.

    Raises:
        RuntimeError: the compiler's messages, when the build fails.
    """
    cache = Path(tempfile.gettempdir()) / "gpunn-cuda-emu"
    cache.mkdir(exist_ok=True)
    target = cache / f"{source.stem}-{_digest(source, include_dir, defines)}.so"
    if not target.exists():
        fd, temp = tempfile.mkstemp(dir=cache, suffix=".so.tmp")
        os.close(fd)
        command = [
            "g++",
            *FLAGS,
            "-include",
            str(SHIM),
            "-DGPUNN_EMULATE",
            *(f"-D{d}" for d in defines),
            "-I",
            str(include_dir),
            "-o",
            temp,
            str(source),
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            os.unlink(temp)
            raise RuntimeError(f"emulator build of {source.name} failed:\n{out.stderr}")
        os.replace(temp, target)
    return Module(ctypes.CDLL(str(target)))


class Module:
    """The kernels of one compiled file."""

    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib
        lib.gpunn_emu_launch.restype = ctypes.c_int
        lib.gpunn_emu_launch.argtypes = [
            ctypes.c_char_p,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        lib.gpunn_emu_names.restype = ctypes.c_int
        lib.gpunn_emu_names.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        buf = ctypes.create_string_buffer(lib.gpunn_emu_names(None, 0) + 1)
        lib.gpunn_emu_names(buf, len(buf))
        self.names = [n for n in buf.value.decode().split("\n") if n]

    def get_function(self, name: str) -> Function:
        if name not in self.names:
            raise KeyError(f"no kernel {name!r}; registered: {self.names}")
        return Function(self._lib, name)


class Function:
    """One kernel, called like ``cupy.RawKernel``: ``fn(grid, block, args)``."""

    def __init__(self, lib: ctypes.CDLL, name: str):
        self._lib, self.name = lib, name

    def __call__(self, grid, block, args, shared_mem: int = 0) -> None:
        """Runs the kernel; raises RuntimeError with the emulator's message on misuse."""
        if shared_mem:
            raise ValueError(f"{self.name}: dynamic shared memory is not emulated")
        grid, block = _dim(grid, "grid"), _dim(block, "block")
        values = [_c_value(self.name, i, a) for i, a in enumerate(args)]
        pointers = (ctypes.c_void_p * max(len(values), 1))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values]
        )
        err = ctypes.create_string_buffer(4096)
        status = self._lib.gpunn_emu_launch(
            self.name.encode(), grid, block, pointers, err, len(err)
        )
        if status != 0:
            raise RuntimeError(err.value.decode())


def _dim(value, what: str) -> int:
    dims = tuple(value) if isinstance(value, tuple | list) else (value,)
    if not dims or any(d != 1 for d in dims[1:]):
        raise ValueError(f"the emulator runs 1-D {what}s only, got {dims}")
    if not 0 <= int(dims[0]) < 2**31:
        raise ValueError(f"{what} size must be in [0, 2**31), got {dims[0]}")
    return int(dims[0])


def _c_value(kernel: str, index: int, arg):
    if isinstance(arg, np.ndarray):
        if not arg.flags.c_contiguous:
            raise ValueError(f"{kernel}: argument {index} is not C-contiguous")
        return ctypes.c_void_p(arg.ctypes.data)
    if arg is None:
        return ctypes.c_void_p(0)  # a null pointer (an absent optional array)
    if isinstance(arg, np.generic):
        ctype = _SCALARS.get(arg.dtype)
        if ctype is None:
            raise TypeError(f"{kernel}: argument {index} has unsupported {arg.dtype}")
        if arg.dtype == np.float16:
            return ctype(int(arg.view(np.uint16)))
        return ctype(arg.item())
    raise TypeError(
        f"{kernel}: argument {index} is a Python {type(arg).__name__}; cast it to a "
        "NumPy scalar of the kernel's C type (CuPy passes a Python float as double)"
    )
