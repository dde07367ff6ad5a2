"""``gpunn info`` (versions, and whether and how the GPU backend runs) and ``gpunn
warmup`` (compile every CUDA kernel into the on-disk cache before the first training
run)."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

import gpunn
from gpunn import backends
from gpunn.backends import kernels


def add_parsers(sub) -> None:
    sub.add_parser("info", help="print versions and whether the GPU backend is usable")
    warmup = sub.add_parser(
        "warmup",
        help="compile every CUDA kernel into gpunn's on-disk cache (needs a GPU)",
    )
    warmup.add_argument(
        "--no-half",
        action="store_true",
        help="skip the 16-bit kernels (float16/bfloat16 and mixed-precision "
        "updates; they need cuda_fp16.h and cuda_bf16.h at compile time)",
    )


def info(args) -> int:
    print(f"gpunn {gpunn.__version__}")
    print(f"python {platform.python_version()} ({platform.platform()})")
    print(f"numpy {np.__version__}")
    files = kernels.kernel_files()
    count = sum(len(_names(f)) for f in files)
    print(f"kernels: {count} in {len(files)} files, compiled on first use")
    gpu_cls, reason = backends.gpu_status()
    if gpu_cls is None:
        print(f"gpu backend: not usable: {reason}")
    else:
        import cupy  # imported already by the probe

        gpu = backends.get_backend("gpu")
        print(
            f"cupy {cupy.__version__}, CUDA runtime "
            f"{cupy.cuda.runtime.runtimeGetVersion()}, driver "
            f"{cupy.cuda.runtime.driverGetVersion()}"
        )
        print(f"gpu backend: usable on {gpu.device_name()}")
        override = os.environ.get("NVIDIA_TF32_OVERRIDE")
        print(
            "tf32: off by default, on with Sequential(tf32=True) or gpunn train "
            f"--tf32{'; NVIDIA_TF32_OVERRIDE=0 forces it off' if override == '0' else ''}"
        )
        print(f"kernel cache: {_cache_dir()}")
    print(f"auto picks: {'gpu' if gpu_cls else 'cpu'}")
    return 0


def warmup(args) -> int:
    """Compiles every exported kernel (NVRTC through CuPy; the binaries are cached on
    disk), so the first training step of later runs compiles nothing."""
    gpu = backends.get_backend("gpu")  # BackendUnavailableError says how to fix
    start = time.perf_counter()
    names = gpu.kernels.warmup(half=not args.no_half)
    seconds = time.perf_counter() - start
    print(
        f"compiled {len(names)} kernels from {len(kernels.kernel_files())} files in "
        f"{seconds:.1f}s into {_cache_dir()}"
    )
    return 0


def _names(filename: str) -> tuple[str, ...]:
    source = kernels.read_source(filename)
    return source.exports + source.half_exports


def _cache_dir() -> str:
    """gpunn's kernel cache directory (``GPUNN_KERNEL_CACHE``, else ``gpunn/`` in
    CuPy's cache directory)."""
    from gpunn.backends import kernel_cache

    return kernel_cache.cache_dir()


COMMANDS = {"info": info, "warmup": warmup}
