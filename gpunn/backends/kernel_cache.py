"""Compiling gpunn's kernel files for CuPy without flushing float32 subnormals, and
keeping the binaries on disk.

CuPy's ``RawModule`` appends ``-ftz=true`` to every NVRTC compile, and NVRTC takes the
last of repeated options, so a kernel built that way flushes float32 subnormals
(``|x| < 1.18e-38``) to zero where the NumPy reference keeps them. gpunn compiles its
files with ``cupy.cuda.compiler.compile_using_nvrtc`` instead, which passes the options
as given (``-ftz=false`` among them), with the include paths a ``RawModule`` would get,
and loads the binary as a ``cupy.cuda.function.Module``. A CuPy without those functions
falls back to ``RawModule`` and logs once that float32 subnormals flush.

The binaries are cached in :func:`cache_dir` (env ``GPUNN_KERNEL_CACHE``, else
``gpunn/`` inside CuPy's cache, ``CUPY_CACHE_DIR`` or ``~/.cupy/kernel_cache``), one
``<key>.bin`` and one ``<key>.json`` (the mangled kernel names and the binary's SHA-256)
per compile, keyed by the source, options, device architecture and NVRTC version. A
cached entry that fails its digest is compiled again; so is one that cannot be read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile

logger = logging.getLogger("gpunn")
ENV_VAR = "GPUNN_KERNEL_CACHE"
FLUSHING_FALLBACK = (
    "this CuPy has no cupy.cuda.compiler.compile_using_nvrtc / "
    "cupy._core.core.assemble_cupy_compiler_options: gpunn's kernels are compiled "
    "by cupy.RawModule, which adds -ftz=true (float32 subnormals flush to zero)"
)


def cache_dir() -> str:
    """Where compiled kernel binaries are kept."""
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    cupy_cache = os.environ.get("CUPY_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cupy", "kernel_cache"
    )
    return os.path.join(cupy_cache, "gpunn")


def cache_key(text: str, options, names, platform: dict) -> str:
    """A digest of everything the binary depends on."""
    fields = {"source": text, "options": list(options), "names": list(names)}
    blob = json.dumps({**fields, "platform": platform}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def load(directory: str, key: str) -> tuple[bytes, dict] | None:
    """The cached ``(binary, {name expression: mangled name})`` of ``key``, or None
    when it is missing, unreadable or fails its digest."""
    base = os.path.join(directory, key)
    try:
        with open(base + ".json", encoding="utf-8") as f:
            meta = json.load(f)
        with open(base + ".bin", "rb") as f:
            binary = f.read()
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("sha256") != hashlib.sha256(binary).hexdigest():
        return None
    names = meta.get("names")
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in names.items()
    ):
        return None
    return binary, names


def store(directory: str, key: str, binary: bytes, names: dict) -> None:
    """Writes a cache entry (the binary first, each file replaced atomically); a
    cache that cannot be written is skipped with a logged line."""
    meta = {"sha256": hashlib.sha256(binary).hexdigest(), "names": names}
    try:
        os.makedirs(directory, exist_ok=True)
        _replace(os.path.join(directory, key + ".bin"), binary)
        _replace(os.path.join(directory, key + ".json"), json.dumps(meta).encode())
    except OSError as exc:
        logger.info("gpunn: kernel cache %s not written (%s)", directory, exc)


def _replace(path: str, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


class LoadedModule:
    """A ``cupy.cuda.function.Module`` answering ``get_function`` by name
    expression (``"relu_fwd<float>"``), as ``RawModule`` does."""

    def __init__(self, module, names: dict):
        self.module, self.names = module, names

    def get_function(self, name: str):
        return self.module.get_function(self.names[name])


def compile_module(text: str, options: tuple, names: tuple):
    """Compiles ``text`` with NVRTC exactly with ``options`` (no ``-ftz=true``
    appended), through the on-disk cache; returns a module with
    ``get_function(name expression)``."""
    import cupy

    try:
        from cupy._core.core import assemble_cupy_compiler_options
        from cupy.cuda import compiler, function

        compile_using_nvrtc = compiler.compile_using_nvrtc
    except (ImportError, AttributeError):
        _warn_flushing_fallback()
        return cupy.RawModule(code=text, options=options, name_expressions=names)
    options = tuple(assemble_cupy_compiler_options(tuple(options)))
    directory, key = cache_dir(), cache_key(text, options, names, _platform(cupy))
    found = load(directory, key)
    if found is None:
        binary, mapping = compile_using_nvrtc(
            text, options, name_expressions=names, cache_in_memory=True
        )
        found = bytes(binary), {str(k): _text(v) for k, v in (mapping or {}).items()}
        store(directory, key, *found)
    module = function.Module()
    module.load(found[0])
    return LoadedModule(module, found[1])


def _platform(cupy) -> dict:
    """What else a binary depends on: device architecture and the compilers."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        version = list(nvrtc.getVersion())
    except Exception:  # noqa: BLE001 - then the CuPy version stands for it
        version = None
    return {
        "arch": cupy.cuda.Device().compute_capability,
        "nvrtc": version,
        "cupy": cupy.__version__,
    }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@functools.cache
def _warn_flushing_fallback() -> None:
    logger.warning("gpunn: %s", FLUSHING_FALLBACK)
