"""Kernel sources compile the way they are used: every export line names a kernel,
nothing but ``common.cuh`` (and ``cuda_fp16.h`` / ``cuda_bf16.h`` for the half module)
is included, and, where an NVRTC library can be found, every file compiles with NVRTC
exactly as CuPy will compile it at run time (the loader's inlined text and name
expressions).

NVRTC is looked for in env ``GPUNN_NVRTC`` (a path to ``libnvrtc.so``), the
``nvidia-cuda-nvrtc`` wheel (in the test extra on Linux x86-64) and the library path;
nvcc compiles every file too (tests/test_packaging.py).
"""

import ctypes
import ctypes.util
import importlib.util
import os
import re
from pathlib import Path

import pytest

from gpunn.backends import kernels

FILES = kernels.kernel_files()
INCLUDE = re.compile(r"^\s*#\s*include\s*[<\"]([^>\"]+)[>\"]", re.MULTILINE)


@pytest.mark.parametrize("filename", FILES)
def test_kernel_files_include_only_their_own_headers(filename):
    root = Path(kernels.__file__).resolve().parents[2] / "kernels"
    for path in [root / filename, *root.glob("*.cuh")]:
        for name in INCLUDE.findall(path.read_text()):
            allowed = {"common.cuh", "cuda_fp16.h", "cuda_bf16.h"}
            assert name in allowed, f"{path.name}: {name}"


@pytest.mark.parametrize("filename", FILES)
def test_every_file_exports_kernels_it_defines(filename):
    source = kernels.read_source(filename)
    assert source.exports, f"{filename} exports no float/double kernel"
    for name in source.exports + source.half_exports:
        base = name.split("<")[0]
        assert re.search(rf"__global__\s+void\s+{base}\b", source.text), name
    assert '#include "' not in source.text  # the loader inlined every header


def _nvrtc():
    candidates = [os.environ.get("GPUNN_NVRTC")]
    for package in ("nvidia.cu13", "nvidia.cuda_nvrtc"):
        spec = importlib.util.find_spec(package.split(".")[0])
        if spec and spec.submodule_search_locations:
            for base in spec.submodule_search_locations:
                candidates += [str(p) for p in Path(base).rglob("libnvrtc.so*")]
    candidates.append(ctypes.util.find_library("nvrtc"))
    for path in filter(None, candidates):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _compile(lib, source, names, options) -> tuple[int, str, list, str]:
    """NVRTC's ``(status, log, lowered names, PTX)`` for ``source``."""
    prog = ctypes.c_void_p()
    text = source.text.encode()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), text, None, 0, None, None) == 0
    try:
        for name in names:
            lib.nvrtcAddNameExpression(prog, name.encode())
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        status = lib.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value + 1)
        lib.nvrtcGetProgramLog(prog, log)
        lowered, ptx = [], ctypes.create_string_buffer(1)
        for name in names if status == 0 else ():
            out = ctypes.c_char_p()
            lib.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(out))
            lowered.append(out.value)
        if status == 0:
            lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
            ptx = ctypes.create_string_buffer(size.value + 1)
            lib.nvrtcGetPTX(prog, ptx)
        return status, log.value.decode(errors="replace"), lowered, ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _cuda_include():
    for base in (os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if base and (Path(base) / "include" / "cuda_fp16.h").is_file():
            return str(Path(base) / "include")
    return None


@pytest.mark.parametrize("half", [False, True], ids=["float-double", "half"])
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("filename", FILES)
def test_kernel_compiles_with_nvrtc(filename, arch, half):
    lib = _nvrtc()
    if lib is None:
        pytest.skip("no NVRTC library here (set GPUNN_NVRTC to libnvrtc.so)")
    source = kernels.read_source(filename)
    names = source.half_exports if half else source.exports
    if not names:
        pytest.skip(f"{filename} has no {'half' if half else 'float'} kernels")
    options = [*kernels.NVRTC_OPTIONS, f"--gpu-architecture={arch}"]
    if half:
        include = _cuda_include()
        if include is None:
            pytest.skip("no cuda_fp16.h for the half module (CuPy brings its own)")
        options += ["-DGPUNN_HALF", f"-I{include}"]
    status, log, lowered, _ = _compile(lib, source, names, options)
    assert status == 0, log
    assert all(lowered), f"names without a kernel: {names}"


# PTX instructions that flush float32 subnormals carry ``.ftz``. With -ftz=false only
# the approximate building blocks inside CUDA's own exp/erf/tanh keep it (those
# functions scale their arguments around it); no arithmetic, compare or conversion may.
FTZ = re.compile(r"\b([a-z0-9]+(?:\.[a-z0-9]+)*\.ftz(?:\.[a-z0-9]+)*)")
MATH_LIBRARY_FTZ = {"ex2.approx.ftz.f32", "rcp.approx.ftz.f32", "rcp.approx.ftz.f64"}


def _flushing_instructions(lib, filename: str, options) -> set:
    source = kernels.read_source(filename)
    options = [*options, "--gpu-architecture=compute_90"]
    status, log, _, ptx = _compile(lib, source, source.exports, options)
    assert status == 0, log
    return set(FTZ.findall(ptx)) - MATH_LIBRARY_FTZ


@pytest.mark.parametrize("filename", FILES)
def test_kernels_keep_float32_subnormals(filename):
    """With gpunn's options no instruction flushes float32 subnormals; with the
    ``-ftz=true`` that cupy.RawModule appends (NVRTC takes the last of repeated
    options) they would: the negative control, and why gpunn compiles without it."""
    lib = _nvrtc()
    if lib is None:
        pytest.skip("no NVRTC library here (set GPUNN_NVRTC to libnvrtc.so)")
    assert "-ftz=false" in kernels.NVRTC_OPTIONS
    assert _flushing_instructions(lib, filename, kernels.NVRTC_OPTIONS) == set()
    flushed = _flushing_instructions(
        lib, filename, [*kernels.NVRTC_OPTIONS, "-ftz=true"]
    )
    assert any(i.startswith("mul.rn.ftz.f32") for i in flushed), flushed


def test_shared_helpers_compile_with_nvrtc():
    """common.cuh's helpers (block reductions, -inf) compile under NVRTC too: the
    emulator's self-test kernels instantiate them."""
    lib = _nvrtc()
    if lib is None:
        pytest.skip("no NVRTC library here (set GPUNN_NVRTC to libnvrtc.so)")
    root = Path(kernels.__file__).resolve().parents[2]
    common = (root / "kernels" / "common.cuh").read_text()
    text = (Path(__file__).with_name("cuda_emu") / "selftest.cu").read_text()
    text = text.replace('#include "common.cuh"', common)
    names = re.findall(r"^GPUNN_EXPORT\((.+)\)$", text, re.MULTILINE)
    source = kernels.Source("selftest.cu", text, tuple(names), ())
    status, log, lowered, _ = _compile(lib, source, names, list(kernels.NVRTC_OPTIONS))
    assert status == 0, log
    assert all(lowered)
