"""What a benchmark result depends on: the machine, library versions, BLAS and thread
settings, and the GPU."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def machine(device: str) -> dict:
    """The machine, library versions and thread settings a result depends on."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "versions": _versions(),
        "blas": _blas(),
        "env": {
            k: os.environ.get(k)
            for k in (
                "NVIDIA_TF32_OVERRIDE",
                "CUPY_TF32",
                "OMP_NUM_THREADS",
                "CI",
                "TORCHINDUCTOR_FORCE_DISABLE_CACHES",
            )
        },
    }
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    if device == "gpu":
        info["gpu"] = _gpu()
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def _versions() -> dict:
    names = (
        "gpunn",
        "numpy",
        "cupy",
        "cupy-cuda12x",
        "cupy-cuda13x",
        "torch",
        "scikit-learn",
        "matplotlib",
        "threadpoolctl",
    )
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _blas() -> dict:
    info = {}
    try:
        import numpy as np

        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info = {"name": blas.get("name"), "version": blas.get("version")}
    except Exception as exc:  # noqa: BLE001 - informative only
        info = {"name": f"unknown ({type(exc).__name__})"}
    try:
        from threadpoolctl import threadpool_info

        info["threads"] = [p.get("num_threads") for p in threadpool_info()]
    except ImportError:
        pass
    return info


def _gpu() -> dict:
    import cupy

    runtime = cupy.cuda.runtime
    props = runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "sms": props["multiProcessorCount"],
        "driver": runtime.driverGetVersion(),
        "runtime": runtime.runtimeGetVersion(),
    }
