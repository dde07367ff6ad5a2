"""The safetensors file format, written and read safely without the ``safetensors``
package.

Layout (https://huggingface.co/docs/safetensors): an unsigned 64-bit little-endian
header length ``n``; ``n`` bytes of UTF-8 JSON ``{name: {"dtype": "F32", "shape": [2,
3], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}``, padded with
spaces to a multiple of 8; then the raw little-endian, C-order tensor bytes, with
``data_offsets`` counted from the end of the header. Files written here load with
``safetensors.numpy.load_file`` / ``safetensors.torch.load_file``.

Dtypes (allow-list): ``F16, F32, F64, I8, I16, I32, I64, U8, U16, U32, U64, BOOL``.
``BF16`` and the ``F8`` types are refused (NumPy has no such dtypes).

Integrity: :func:`write_file` adds two metadata entries, ``"gpunn.sha256"`` (SHA-256
hex of all tensor bytes, i.e. of the file after the header) and
``"gpunn.header_sha256"`` (SHA-256 of the header as canonical JSON -- sorted keys, no
spaces, ASCII -- without that entry), so a flipped bit anywhere in the file is
detected. :func:`read_file` checks both and removes them from the metadata it returns.

Untrusted files: :func:`read_file` checks the header length against the limit and the
file size, the JSON (no duplicate keys, no ``NaN``/``Infinity``), the tensor count,
every dtype, shape and offset, and that the offsets tile the data exactly, all before
the data is read; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct

import numpy as np

from gpunn.checks import check_int
from gpunn.errors import CorruptFileError, UnsafeFileError
from gpunn.persistence import _header
from gpunn.persistence.atomic import atomic_write, clean_stale_temps

DTYPES = _header.DTYPES
_CODES = {(np.dtype(v).kind, np.dtype(v).itemsize): k for k, v in DTYPES.items()}
MAX_TENSORS = 10_000
MAX_HEADER_BYTES = 16 * 2**20
DATA_SHA256 = "gpunn.sha256"
HEADER_SHA256 = "gpunn.header_sha256"

__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "MAX_TENSORS",
    "clean_stale_temps",
    "read_file",
    "read_metadata",
    "serialize",
    "write_file",
]


# ------------------------------------------------------------------ writing
def write_file(path, tensors: dict, metadata: dict | None = None) -> None:
    """Saves NumPy arrays and string metadata to a safetensors file, atomically.

    The file is serialized in memory, written to ``<dir>/.<name>.<random>.tmp``,
    fsynced, renamed over ``path`` with ``os.replace`` and the directory fsynced (see
    :mod:`gpunn.persistence.atomic`). Non-contiguous and big-endian arrays are
    written as C-order little-endian copies; tensors are laid out by decreasing
    itemsize, then name, so every tensor is aligned in the file.

    Args:
        path: destination (str or path-like); a symbolic link is followed (the
            link stays), missing directories are created, anything but a regular
            file there is refused (see :func:`~gpunn.persistence.atomic.
            atomic_write`).
        tensors: ``{name: np.ndarray}`` with dtypes from :data:`DTYPES` (any shape,
            0-d and empty included); names are non-empty strings other than
            ``"__metadata__"``.
        metadata: ``{str: str}`` stored in the header's ``"__metadata__"``; the keys
            ``"gpunn.sha256"`` and ``"gpunn.header_sha256"`` are reserved. Default:
            None (none).

    Raises:
        TypeError / ValueError: bad names, arrays, dtypes or metadata, or a file
            :func:`read_file` would refuse (over :data:`MAX_TENSORS` tensors or a
            header over :data:`MAX_HEADER_BYTES`); nothing is written.
        OSError: the original error of a failed write (disk full, permission
            denied), naming ``path``; the temp file is removed and an existing
            ``path`` is intact. IsADirectoryError / FileExistsError when ``path``
            is a directory or another non-regular file.
    """
    atomic_write(path, serialize(tensors, metadata))


def serialize(tensors: dict, metadata: dict | None = None) -> list:
    """The file's bytes as a list of buffers (length, header, then each tensor's
    bytes without copying contiguous little-endian arrays); arguments as
    :func:`write_file`."""
    arrays = {name: _host_array(name, a) for name, a in _named(tensors)}
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    entries, data, offset = {}, [], 0
    for name in order:
        raw = arrays[name].reshape(-1).view(np.uint8)
        code = _CODES[arrays[name].dtype.kind, arrays[name].dtype.itemsize]
        shape = list(arrays[name].shape)
        offsets = [offset, offset + raw.size]
        entries[name] = {"dtype": code, "shape": shape, "data_offsets": offsets}
        data.append(raw)
        offset += raw.size
    digest = hashlib.sha256()
    for raw in data:
        digest.update(raw)
    meta = {**_checked_metadata(metadata), DATA_SHA256: digest.hexdigest()}
    meta[HEADER_SHA256] = header_digest(entries, meta)
    text = json.dumps(
        {**entries, "__metadata__": meta}, separators=(",", ":"), ensure_ascii=False
    )
    header = text.encode("utf-8")
    header += b" " * (-len(header) % 8)
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(
            f"the header would be {len(header)} bytes, over read_file's limit of "
            f"{MAX_HEADER_BYTES}: store large values as tensors, not metadata"
        )
    return [struct.pack("<Q", len(header)), header, *data]


def header_digest(entries: dict, metadata: dict) -> str:
    """SHA-256 hex of the header as canonical JSON, without ``HEADER_SHA256``."""
    meta = {k: v for k, v in metadata.items() if k != HEADER_SHA256}
    canonical = json.dumps(
        {**entries, "__metadata__": meta}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _named(tensors) -> list:
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict, got {type(tensors).__name__}")
    if len(tensors) > MAX_TENSORS:
        raise ValueError(
            f"tensors must hold at most {MAX_TENSORS} arrays (read_file's limit), "
            f"got {len(tensors)}"
        )
    for name in tensors:
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(
                f"tensor names must be non-empty strings other than '__metadata__', "
                f"got {name!r}"
            )
    return list(tensors.items())


def _host_array(name: str, array) -> np.ndarray:
    """``array`` as a C-contiguous little-endian NumPy array of an allowed dtype."""
    if isinstance(array, np.generic):
        array = np.asarray(array)
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"tensor {name!r} must be a NumPy array, got {type(array).__name__}"
        )
    if (array.dtype.kind, array.dtype.itemsize) not in _CODES:
        raise TypeError(
            f"tensor {name!r} has dtype {array.dtype}; allowed: "
            f"{', '.join(str(np.dtype(v)) for v in DTYPES.values())}"
        )
    array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return array if array.flags.c_contiguous else array.copy(order="C")


def _checked_metadata(metadata) -> dict:
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"metadata must map str to str, got {key!r}: {type(value).__name__}"
            )
        if key in (DATA_SHA256, HEADER_SHA256):
            raise ValueError(f"metadata key {key!r} is reserved for the checksums")
    return dict(metadata)


# ------------------------------------------------------------------ reading
def read_file(
    path,
    *,
    max_tensors: int = MAX_TENSORS,
    max_header_bytes: int = MAX_HEADER_BYTES,
    require_checksum: bool = True,
) -> tuple[dict, dict]:
    """Loads a safetensors file, validating it as untrusted input.

    Checks, in order and before reading the tensor data: the header length (at most
    ``max_header_bytes`` and within the file); the header as strict UTF-8 JSON (no
    duplicate keys, no ``NaN``/``Infinity``, at most ``max_tensors`` tensors);
    every entry (a dtype from :data:`DTYPES`, a shape of at most 64 ints >= 0 whose
    byte size equals its offsets, with no overflow); offsets that tile the data
    exactly (sorted, contiguous, no overlap, no gap, no trailing bytes); then the
    two SHA-256 checksums.

    Args:
        path: the file (str or path-like).
        max_tensors: most tensors accepted. Default: 10,000.
        max_header_bytes: longest header accepted. Default: 16 MiB.
        require_checksum: refuse files without gpunn's checksums (files written by
            other tools have none: pass False to read them). Default: True.

    Returns: ``(tensors, metadata)``: ``{name: np.ndarray}`` (native byte order,
    writable views into one buffer holding the file's data, in header order) and
    ``{str: str}`` without the checksum entries.

    Raises:
        CorruptFileError: truncated, extended or altered file, unreadable header.
        UnsafeFileError: a pickle/zip/npy file, limits exceeded, a dtype outside the
            allow-list, bad shapes or offsets, duplicate keys, non-finite numbers.
        OSError: the file cannot be opened or read.
    """
    path = os.fspath(path)
    max_tensors = check_int("max_tensors", max_tensors, 0)
    max_header_bytes = check_int("max_header_bytes", max_header_bytes, 2)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        n = _header_length(f, size, path, max_header_bytes)
        header = _header.parse(_read_exact(f, n, path), path, max_tensors)
        metadata = _header.metadata(header.pop("__metadata__", {}), path)
        layout = _header.layout(header, size - 8 - n, path)
        expected_header = header_digest(header, metadata)
        data = _read_data(f, size - 8 - n, path)
    _verify(metadata, expected_header, data, path, require_checksum)
    return {name: _array(data, *entry) for name, entry in layout.items()}, metadata


def read_metadata(path) -> dict:
    """The ``__metadata__`` of a file :func:`write_file` wrote, from its header
    alone: the header checks of :func:`read_file` and the header's SHA-256, without
    reading or verifying the tensor data (a cheap "who wrote this file?").

    Raises: CorruptFileError / UnsafeFileError as :func:`read_file`; OSError."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        n = _header_length(f, size, path, MAX_HEADER_BYTES)
        header = _header.parse(_read_exact(f, n, path), path, MAX_TENSORS)
    metadata = _header.metadata(header.pop("__metadata__", {}), path)
    _header.layout(header, size - 8 - n, path)
    recorded = metadata.pop(HEADER_SHA256, None)
    if recorded != header_digest(header, metadata):
        raise CorruptFileError(
            f"{path}: the header does not match its SHA-256 (file altered, "
            "corrupted, or not written by gpunn)"
        )
    metadata.pop(DATA_SHA256, None)
    return metadata


def _header_length(f, size: int, path: str, limit: int) -> int:
    head = _read_exact(f, 8, path) if size >= 8 else b""
    if size < 8:
        raise CorruptFileError(
            f"{path}: file is {size} bytes, shorter than the 8-byte header length "
            "(truncated or not a safetensors file)"
        )
    n = struct.unpack("<Q", head)[0]
    if n > limit or n > size - 8 or n < 2:
        foreign = _header.foreign_format(head)
        if foreign:
            raise UnsafeFileError(
                f"{path}: a {foreign} file, not safetensors; gpunn never unpickles"
            )
        if n > limit:
            raise UnsafeFileError(
                f"{path}: header length {n} exceeds the limit max_header_bytes={limit}"
            )
        raise CorruptFileError(
            f"{path}: header length {n} does not fit the file of {size} bytes "
            "(truncated or not a safetensors file)"
        )
    return n


def _read_exact(f, n: int, path: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CorruptFileError(f"{path}: expected {n} more bytes, got {len(data)}")
    return data


def _read_data(f, n: int, path: str) -> bytearray:
    data = bytearray(n)
    view, got = memoryview(data), 0
    while got < n:
        chunk = f.readinto(view[got:])
        if not chunk:
            raise CorruptFileError(f"{path}: data ends after {got} of {n} bytes")
        got += chunk
    if f.read(1):
        raise CorruptFileError(f"{path}: the file grew while it was read")
    return data


def _verify(metadata: dict, header_sha: str, data, path: str, required: bool):
    recorded = metadata.pop(DATA_SHA256, None), metadata.pop(HEADER_SHA256, None)
    if recorded == (None, None) and not required:
        return
    if None in recorded:
        raise CorruptFileError(
            f"{path}: no {DATA_SHA256!r} and {HEADER_SHA256!r} checksums in the "
            "metadata (a file from another tool? read_file(..., "
            "require_checksum=False) reads it unverified)"
        )
    if recorded[1] != header_sha:
        raise CorruptFileError(
            f"{path}: the header does not match its SHA-256 (file altered or "
            f"corrupted): recorded {recorded[1]!r}, computed {header_sha}"
        )
    actual = hashlib.sha256(data).hexdigest()
    if recorded[0] != actual:
        raise CorruptFileError(
            f"{path}: the tensor data does not match its SHA-256 (file altered or "
            f"corrupted): recorded {recorded[0]!r}, computed {actual}"
        )


def _array(data, code: str, shape: tuple, begin: int, path: str) -> np.ndarray:
    dtype = np.dtype(DTYPES[code])
    count = math.prod(shape)
    if count == 0:
        return np.zeros(shape, dtype.newbyteorder("="))
    if code == "BOOL" and np.frombuffer(data, np.uint8, count, begin).max() > 1:
        raise CorruptFileError(f"{path}: a BOOL tensor holds bytes other than 0 and 1")
    array = np.frombuffer(data, dtype, count, begin).reshape(shape)
    if not dtype.isnative:
        return array.astype(dtype.newbyteorder("="))
    return array if array.flags.aligned else array.copy()
