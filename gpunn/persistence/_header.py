"""Checks of a safetensors header read from an untrusted file (for
:func:`gpunn.persistence.safetensors.read_file`): everything is validated from the
header alone, before the tensor data is read or any array allocated."""

from __future__ import annotations

import json
import math
import re

import numpy as np

from gpunn.errors import CorruptFileError, UnsafeFileError

DTYPES = {
    "F16": "<f2",
    "F32": "<f4",
    "F64": "<f8",
    "I8": "i1",
    "I16": "<i2",
    "I32": "<i4",
    "I64": "<i8",
    "U8": "u1",
    "U16": "<u2",
    "U32": "<u4",
    "U64": "<u8",
    "BOOL": "?",
}
MAX_NDIM = 64  # NumPy's limit
MAX_BYTES = 2**63 - 1  # NumPy's limit on size * itemsize (zero dims not counted)
EXTRA_BRACKETS = 100_000  # JSON objects/arrays allowed beyond 3 per tensor
MAX_DEPTH = 64  # nesting of JSON objects/arrays, in the header and in metadata JSON
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
_KEYS = {"dtype", "shape", "data_offsets"}


class _Refused(Exception):
    """Raised inside the JSON parser's hooks; not a ValueError on purpose."""


def foreign_format(head: bytes) -> str | None:
    """The name of a known non-safetensors format from a file's first 8 bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "zip (torch.save or .npz)"
    if head.startswith(b"\x93NUMPY"):
        return ".npy"
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:
        return "pickle"
    return None


def parse(raw: bytes, path: str, max_tensors: int) -> dict:
    """The header as a dict: strict UTF-8 JSON object, no duplicate keys, no
    non-finite numbers, at most ``max_tensors`` tensor entries."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{path}: the header is not UTF-8: {exc}") from None
    if not text.startswith("{"):
        raise CorruptFileError(
            f"{path}: the header must be a JSON object, got {_short(text[:20])}"
        )
    _precount(text, path, max_tensors)
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise UnsafeFileError(
            f"{path}: the header JSON nests {depth} levels deep, over the limit of "
            f"{MAX_DEPTH}"
        )
    try:
        header = json.loads(
            text, object_pairs_hook=_unique, parse_constant=_no_constant
        )
    except _Refused as exc:
        raise UnsafeFileError(f"{path}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(f"{path}: the header is not valid JSON: {exc}") from None
    count = len(header) - ("__metadata__" in header)
    if count > max_tensors:
        raise UnsafeFileError(
            f"{path}: {count} tensors, over the limit max_tensors={max_tensors}"
        )
    return header


def strict_loads(text: str, constants: bool = False):
    """``json.loads`` for JSON stored inside the metadata, refusing duplicate keys,
    nesting deeper than :data:`MAX_DEPTH` and (unless ``constants``)
    ``NaN``/``Infinity``: ValueError naming the problem."""
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise ValueError(f"JSON nested {depth} levels deep, over the limit {MAX_DEPTH}")
    hook = None if constants else _no_constant
    try:
        return json.loads(text, object_pairs_hook=_unique, parse_constant=hook)
    except (_Refused, RecursionError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


def json_depth(text: str) -> int:
    """The deepest nesting of objects and arrays in JSON ``text`` (brackets inside
    strings not counted), read without parsing: bounds the parser's recursion."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        depth += 1 if match[0] in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _precount(text: str, path: str, max_tensors: int) -> None:
    """Bounds the parser's work from the raw text: tensor entries and brackets."""
    declared = text.count('"data_offsets"')
    if declared > max_tensors:
        raise UnsafeFileError(
            f"{path}: the header declares {declared} tensors, over the limit "
            f"max_tensors={max_tensors}"
        )
    brackets = text.count("{") + text.count("[")
    limit = 3 * max_tensors + EXTRA_BRACKETS
    if brackets > limit:
        raise UnsafeFileError(
            f"{path}: the header has {brackets} JSON brackets, over the limit of "
            f"{limit} for max_tensors={max_tensors}"
        )


def _unique(pairs) -> dict:
    found = {}
    for key, value in pairs:
        if key in found:
            raise _Refused(f"duplicate key {_short(key)} in the header JSON")
        found[key] = value
    return found


def _no_constant(name: str):
    raise _Refused(f"non-finite number {name} in the header JSON")


def metadata(value, path: str) -> dict:
    """A copy of ``__metadata__``, which must map strings to strings."""
    if not isinstance(value, dict) or not all(
        isinstance(v, str) for v in value.values()
    ):
        raise CorruptFileError(
            f"{path}: __metadata__ must map strings to strings, got {_short(value)}"
        )
    return dict(value)


def layout(header: dict, data_len: int, path: str) -> dict:
    """``{name: (dtype code, shape, begin, path)}`` in header order, once every entry
    is valid and the offsets tile the ``data_len`` data bytes exactly."""
    entries = {name: _entry(name, info, path) for name, info in header.items()}
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda e: e[1][2:]):
        if begin != position:
            raise UnsafeFileError(
                f"{path}: tensor {_short(name)} starts at byte {begin}, expected "
                f"{position}: data_offsets overlap or leave a gap"
            )
        position = end
    if position < data_len:
        raise CorruptFileError(
            f"{path}: {data_len - position} trailing bytes after the last tensor "
            "(file extended or corrupted)"
        )
    if position > data_len:
        raise CorruptFileError(
            f"{path}: the tensors need {position} bytes of data, the file has "
            f"{data_len} (truncated)"
        )
    return {
        name: (code, shape, begin, path)
        for name, (code, shape, begin, _) in entries.items()
    }


def _entry(name: str, info, path: str) -> tuple:
    """``(code, shape, begin, end)`` of one valid tensor entry."""
    where = f"{path}: tensor {_short(name)}"
    if not isinstance(info, dict) or set(info) != _KEYS:
        raise CorruptFileError(
            f"{where} must have exactly the keys dtype, shape and data_offsets, got "
            f"{_short(info)}"
        )
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or code not in DTYPES:
        raise UnsafeFileError(
            f"{where} has dtype {_short(code)}, not in the allow-list {list(DTYPES)}"
        )
    if not _ints(shape, MAX_NDIM) or min(shape, default=0) < 0:
        raise UnsafeFileError(
            f"{where}: shape must be a list of at most {MAX_NDIM} ints >= 0, got "
            f"{_short(shape)}"
        )
    if not _ints(offsets, 2) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
        raise UnsafeFileError(
            f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end, "
            f"got {_short(offsets)}"
        )
    itemsize = np.dtype(DTYPES[code]).itemsize
    if math.prod(max(d, 1) for d in shape) * itemsize > MAX_BYTES:
        raise UnsafeFileError(
            f"{where}: shape {_short(shape)} overflows (its dimensions, zeros not "
            "counted, multiply to more than 2**63-1 bytes)"
        )
    nbytes = math.prod(shape) * itemsize
    if nbytes != offsets[1] - offsets[0]:
        raise UnsafeFileError(
            f"{where}: shape {_short(shape)} of {code} is {nbytes} bytes, but its "
            f"data_offsets span {offsets[1] - offsets[0]}"
        )
    return code, tuple(shape), offsets[0], offsets[1]


def _ints(value, most: int) -> bool:
    """A list of at most ``most`` ints (bools refused)."""
    return (
        isinstance(value, list)
        and len(value) <= most
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
