"""The custom CUDA kernels: reading ``kernels/*.cu``, compiling them lazily, launching.

Each ``.cu`` file (shipped as the package ``gpunn.kernels``) lists its kernels at the
end with ``GPUNN_EXPORT(name<types>)`` lines (``GPUNN_EXPORT_HALF`` for ``__half``
instantiations); :func:`read_source` reads those lines, so the file is the single list
of what exists. A :class:`KernelLibrary` compiles a file the first time one of its
kernels is asked for (NVRTC through CuPy with :data:`NVRTC_OPTIONS` exactly, float32
subnormals kept; the binary is cached on disk, so a later process loads it without
NVRTC: :mod:`gpunn.backends.kernel_cache`) and keeps the module. ``__half`` kernels live in a second module per file, compiled with
``-DGPUNN_HALF``, so a missing ``cuda_fp16.h`` can only break the half kernels.

Launchers (the ``gpu_*`` op mixins) check dtype, shape and contiguity and cast every
scalar with :func:`scalar` before calling :meth:`KernelLibrary.launch`: a raw kernel
checks nothing, and CuPy passes a Python float as a C double.

This module never imports CuPy; :func:`cupy_compiler` does, when called.
"""

from __future__ import annotations

import functools
import importlib.resources
import pathlib
import re
from dataclasses import dataclass

import numpy as np

from gpunn.precision import is_half

__all__ = [
    "KernelLibrary",
    "Source",
    "check_array",
    "ctype",
    "cupy_compiler",
    "kernel_dtype",
    "kernel_files",
    "read_source",
    "scalar",
    "stats_dtype",
]

BLOCK = 256  # threads per block unless a launcher says otherwise
# C++17, no FMA contraction and no flushing of float32 subnormals: each operation
# rounds as in the NumPy reference (see gpunn.backends.kernel_cache for -ftz)
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false", "-ftz=false")
_INCLUDE = re.compile(r'^#include "([\w.]+)"\s*$', re.MULTILINE)
_EXPORT = re.compile(r"^GPUNN_EXPORT(_HALF)?\((.+)\)\s*$", re.MULTILINE)
_WIDE = (np.dtype(np.float32), np.dtype(np.float64))
_CTYPES = {
    np.dtype(np.float16): "__half",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}


@dataclass(frozen=True)
class Source:
    """One kernel file: its text with local headers inlined, and its exports."""

    filename: str
    text: str
    exports: tuple[str, ...]  # float/double kernels (the main module)
    half_exports: tuple[str, ...]  # __half kernels (the half module)


def _root():
    """Where the kernel sources are: the package ``gpunn.kernels`` when gpunn is
    installed, else (a source checkout on ``sys.path``) the ``kernels/`` folder
    beside the ``gpunn/`` one."""
    try:
        return importlib.resources.files("gpunn.kernels")
    except ModuleNotFoundError:
        return pathlib.Path(__file__).resolve().parents[2] / "kernels"


def kernel_files() -> list[str]:
    """The ``.cu`` files shipped in ``gpunn.kernels``, sorted."""
    return sorted(p.name for p in _root().iterdir() if p.name.endswith(".cu"))


@functools.cache
def read_source(filename: str) -> Source:
    """Reads ``filename`` from ``gpunn.kernels``, inlining its ``#include "x.cuh"``
    lines (NVRTC is given no include path), and collects its export lines."""
    root = _root()
    text = _inline(root, (root / filename).read_text(), set())
    exports, half = [], []
    for match in _EXPORT.finditer(text):
        (half if match.group(1) else exports).append(match.group(2).strip())
    return Source(filename, text, tuple(exports), tuple(half))


def _inline(root, text: str, seen: set) -> str:
    def include(match):
        name = match.group(1)
        if name in seen:  # every header is #pragma once
            return ""
        seen.add(name)
        return _inline(root, (root / name).read_text(), seen)

    return _INCLUDE.sub(include, text)


def ctype(dtype) -> str:
    """The C type of a kernel template argument for ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.name == "bfloat16":  # ml_dtypes' (CuPy 14 spells bfloat16 the same way)
        return "__nv_bfloat16"
    try:
        return _CTYPES[dtype]
    except KeyError:
        raise ValueError(
            f"kernels take float16, bfloat16, float32 or float64 arrays, got {dtype}"
        ) from None


def kernel_dtype(dtype) -> bool:
    """Whether gpunn's kernels take arrays of ``dtype``: float16, bfloat16, float32
    or float64."""
    return dtype in _WIDE or is_half(dtype)


def stats_dtype(dtype) -> np.dtype:
    """The dtype a kernel keeps statistics and float32-arena values in for ``dtype``
    arrays: float32 for the 16-bit types, the dtype itself otherwise."""
    return np.dtype(np.float32) if is_half(dtype) else np.dtype(dtype)


def scalar(dtype, value):
    """``value`` as the kernel's accumulate type for ``dtype`` arrays: ``np.float64``
    for float64, else ``np.float32`` (16-bit kernels compute in float)."""
    if np.dtype(dtype) == np.float64:
        return np.float64(value)
    return np.float32(value)


def check_array(op: str, name: str, a, dtype=None, shape=None) -> None:
    """Raises ValueError naming ``op`` and ``name`` unless ``a`` is C-contiguous and,
    when given, of ``dtype`` and ``shape``."""
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise ValueError(f"{op} needs {name} of dtype {np.dtype(dtype)}, got {a.dtype}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(
            f"{op} needs {name} of shape {tuple(shape)}, got {tuple(a.shape)}"
        )
    if not a.flags.c_contiguous:
        raise ValueError(
            f"{op} needs a C-contiguous {name} (pass xp.ascontiguousarray)"
        )


class KernelLibrary:
    """Compiles kernel files on first use and launches their kernels.

    Args:
        compile_module: ``(source: Source, half: bool) -> module``; the module has
            ``get_function(name)`` returning a callable ``fn(grid, block, args)``
            (:class:`~gpunn.backends.kernel_cache.LoadedModule` and the test
            emulator both do).
        max_blocks: the most blocks a grid-stride launch uses (enough to fill the
            device; more only adds scheduling).
    """

    def __init__(self, compile_module, max_blocks: int):
        self._compile = compile_module
        self.max_blocks = int(max_blocks)
        self._modules: dict[tuple[str, bool], object] = {}
        self._functions: dict[str, object] = {}

    def function(self, filename: str, name: str):
        """The compiled kernel ``name`` (a name expression, e.g. ``"relu_fwd<float>"``)
        of ``filename``; compiles the file's module on first use."""
        key = f"{filename}:{name}"
        fn = self._functions.get(key)
        if fn is None:
            source = read_source(filename)
            if name not in source.exports + source.half_exports:
                raise KeyError(f"{filename} exports no kernel {name!r}")
            fn = self._module(source, name in source.half_exports).get_function(name)
            self._functions[key] = fn
        return fn

    def _module(self, source: Source, half: bool):
        key = (source.filename, half)
        if key not in self._modules:
            self._modules[key] = self._compile(source, half)
        return self._modules[key]

    def grid(self, n: int, block: int = BLOCK) -> int:
        """Blocks for ``n`` work items of one thread each, capped at ``max_blocks``."""
        return max(1, min(-(-int(n) // block), self.max_blocks))

    def launch(self, filename: str, name: str, n: int, args, block: int = BLOCK):
        """Launches a grid-stride kernel over ``n`` items (nothing when ``n`` is 0)."""
        if n > 0:
            self.launch_grid(filename, name, self.grid(n, block), block, args)

    def launch_grid(self, filename: str, name: str, grid: int, block: int, args):
        """Launches ``name`` with an explicit 1-D ``grid`` and ``block``."""
        self.function(filename, name)((int(grid),), (int(block),), tuple(args))

    def warmup(self, half: bool = True) -> list[str]:
        """Compiles every exported kernel of every file (the half ones too when
        ``half``) and returns their names: ``gpunn warmup``."""
        names = []
        for filename in kernel_files():
            source = read_source(filename)
            for name in source.exports + (source.half_exports if half else ()):
                self.function(filename, name)
                names.append(f"{filename}:{name}")
        return names


def cupy_compiler(source: Source, half: bool):
    """Compiles ``source`` with NVRTC for CuPy, with :data:`NVRTC_OPTIONS` exactly
    (see :mod:`gpunn.backends.kernel_cache`, which also caches the binary)."""
    from gpunn.backends import kernel_cache

    options = NVRTC_OPTIONS + (("-DGPUNN_HALF",) if half else ())
    names = source.half_exports if half else source.exports
    return kernel_cache.compile_module(source.text, options, names)
