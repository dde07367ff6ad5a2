"""Untrusted files: hostile safetensors files raise gpunn CheckpointErrors before any
large allocation, corrupted files are detected, a Hypothesis fuzz over mutated valid
files sees only documented exceptions, and the package has no pickle path."""

import ast
import contextlib
import json
import pickle
import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpunn
from gpunn.errors import CheckpointError, CorruptFileError, UnsafeFileError
from gpunn.persistence.safetensors import read_file, write_file

PACKAGE = Path(gpunn.__file__).resolve().parent
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def craft(path, header, data=b"", length=None) -> Path:
    """A file with ``header`` (a dict, JSON text or bytes) and ``data`` as is."""
    if isinstance(header, dict):
        header = json.dumps(header)
    raw = header.encode() if isinstance(header, str) else header
    length = len(raw) if length is None else length
    path.write_bytes(struct.pack("<Q", length) + raw + data)
    return path


def peak_bytes(fn) -> int:
    """Peak traced allocation while ``fn`` runs (its exception swallowed)."""
    tracemalloc.start()
    try:
        with contextlib.suppress(CheckpointError):  # callers check the error itself
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused(path, error, match, **kwargs):
    """Asserts ``read_file`` raises ``error`` naming the path and ``match``, using
    under 1 MiB more than the file's size."""
    with pytest.raises(error, match=match) as info:
        read_file(path, **kwargs)
    assert str(path) in str(info.value)
    size = path.stat().st_size
    assert peak_bytes(lambda: read_file(path, **kwargs)) < 3 * size + 2**20


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


# ------------------------------------------------------------------ hostile files
class Payload:
    """Unpickling this creates the file ``marker``: proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_files_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Payload(marker)))
    refused(path, UnsafeFileError, "pickle")
    with pytest.raises(UnsafeFileError, match="never unpickles"):
        gpunn.load(path)
    assert not marker.exists()


def test_a_pickle_inside_a_tensor_is_only_bytes(tmp_path):
    marker = tmp_path / "pwned"
    blob = np.frombuffer(pickle.dumps(Payload(marker)), np.uint8)
    write_file(
        tmp_path / "a.safetensors", {"payload": blob}, {"p": blob.tobytes().hex()}
    )
    tensors, _ = read_file(tmp_path / "a.safetensors")
    np.testing.assert_array_equal(tensors["payload"], blob)
    assert not marker.exists()


@pytest.mark.parametrize(
    "head, kind",
    [(b"PK\x03\x04\x14\x00\x00\x00", "zip"), (b"\x93NUMPY\x01\x00", "npy")],
)
def test_zip_and_npy_files_are_refused(tmp_path, head, kind):
    path = tmp_path / "f.safetensors"
    path.write_bytes(head + b"\x00" * 100)
    refused(path, UnsafeFileError, kind)


def test_oversized_header_is_refused_before_reading_it(tmp_path):
    path = craft(tmp_path / "f", b"{}", length=2**40)
    refused(path, UnsafeFileError, "exceeds the limit")
    path = craft(tmp_path / "g", {"a": entry()}, b"\0" * 8)
    refused(path, UnsafeFileError, "max_header_bytes=16", max_header_bytes=16)


def test_lying_header_length_is_refused(tmp_path):
    header = json.dumps({"a": entry()}).encode()
    path = craft(tmp_path / "f", header, b"\0" * 8, length=len(header) + 9)
    refused(path, CorruptFileError, "does not fit the file")
    path = craft(tmp_path / "g", header, b"\0" * 8, length=len(header) - 1)
    refused(path, CorruptFileError, "not valid JSON")


@pytest.mark.parametrize(
    "offsets_b, size",
    [((4, 12), 12), ((0, 8), 8), ((12, 20), 20)],
    ids=["overlap", "same", "gap"],
)
def test_overlapping_or_gapped_offsets_are_refused(tmp_path, offsets_b, size):
    header = {"a": entry(offsets=(0, 8)), "b": entry(offsets=offsets_b)}
    path = craft(tmp_path / "f", header, b"\0" * size)
    refused(path, UnsafeFileError, "overlap or leave a gap")


@pytest.mark.parametrize(
    "shape, match",
    [
        ([2**32, 2**32, 2**32], "overflows"),
        ([0, 2**63], "overflows"),
        ([2**64], "overflows"),
        ([100_000, 100_000], "is 40000000000 bytes"),
        ([-1], "ints >= 0"),
        ([2.0], "ints >= 0"),
        ([True], "ints >= 0"),
        (["2"], "ints >= 0"),
        ([1] * 65, "at most 64"),
        ("2", "ints >= 0"),
    ],
)
def test_bad_shapes_are_refused_without_allocating(tmp_path, shape, match):
    header = {"a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 4]}}
    refused(craft(tmp_path / "f", header, b"\0" * 4), UnsafeFileError, match)


@pytest.mark.parametrize(
    "offsets", [[4, 0], [-4, 0], [0], [0, 4, 8], [0.0, 4], "0:4", None]
)
def test_bad_offsets_are_refused(tmp_path, offsets):
    header = {"a": {"dtype": "F32", "shape": [1], "data_offsets": offsets}}
    refused(craft(tmp_path / "f", header, b"\0" * 4), UnsafeFileError, "data_offsets")


def test_truncated_and_trailing_data_are_refused(tmp_path):
    refused(
        craft(tmp_path / "f", {"a": entry()}, b"\0" * 9), CorruptFileError, "trailing"
    )
    refused(
        craft(tmp_path / "g", {"a": entry()}, b"\0" * 7), CorruptFileError, "truncated"
    )


@pytest.mark.parametrize("dtype", ["BF16", "F8_E4M3", "c64", "f4", "", 7, None])
def test_dtypes_outside_the_allow_list_are_refused(tmp_path, dtype):
    header = {"a": {"dtype": dtype, "shape": [2], "data_offsets": [0, 4]}}
    refused(craft(tmp_path / "f", header, b"\0" * 4), UnsafeFileError, "allow-list")


@pytest.mark.parametrize(
    "text",
    [
        '{"a": %(e)s, "a": %(e)s}',
        '{"a": {"dtype": "F32", "dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
        '{"a": %(e)s, "__metadata__": {"k": "1", "k": "2"}}',
    ],
)
def test_duplicate_keys_are_refused(tmp_path, text):
    text = text % {"e": json.dumps(entry())}
    refused(craft(tmp_path / "f", text, b"\0" * 8), UnsafeFileError, "duplicate key")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_numbers_are_refused(tmp_path, constant):
    text = '{"a": {"dtype": "F32", "shape": [CONST], "data_offsets": [0, 8]}}'
    text = text.replace("CONST", constant)
    refused(craft(tmp_path / "f", text, b"\0" * 8), UnsafeFileError, "non-finite")


def test_100000_tiny_tensors_are_refused_before_parsing(tmp_path):
    tiny = json.dumps(entry(shape=(0,), offsets=(0, 0)))
    text = "{" + ",".join(f'"t{i}": {tiny}' for i in range(100_000)) + "}"
    path = craft(tmp_path / "f", text)
    refused(path, UnsafeFileError, "100000 tensors, over the limit max_tensors=10000")
    peak = peak_bytes(lambda: read_file(path))
    assert peak < 2.5 * len(text)  # the header text only: nothing was parsed


def test_escaped_keys_cannot_dodge_the_tensor_limit(tmp_path):
    tiny = '{"dtype": "F32", "shape": [0], "data\\u005foffsets": [0, 0]}'
    text = "{" + ",".join(f'"t{i}": {tiny}' for i in range(11)) + "}"
    path = craft(tmp_path / "f", text)
    refused(path, UnsafeFileError, "11 tensors", max_tensors=10)


def test_bracket_bombs_are_refused(tmp_path):
    bomb = '{"__metadata__": {"k": %s}}' % ("[" * 200_000 + "]" * 200_000)
    refused(craft(tmp_path / "f", bomb), UnsafeFileError, "brackets")
    deep = '{"__metadata__": {"k": %s}}' % ("[" * 60_000 + "]" * 60_000)
    refused(craft(tmp_path / "g", deep), CheckpointError, "header|metadata")


@pytest.mark.parametrize(
    "header, match",
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"a": 1}', "exactly the keys"),
        (json.dumps({"a": {**entry(), "extra": 1}}).encode(), "exactly the keys"),
        (b'{"__metadata__": {"k": 1}}', "map strings to strings"),
        (b'{"__metadata__": ["k"]}', "map strings to strings"),
        (b'{"a": 1' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_malformed_headers_are_refused(tmp_path, header, match):
    refused(craft(tmp_path / "f", header), CorruptFileError, match)


def test_bool_tensors_hold_only_zero_and_one(tmp_path):
    header = {"a": entry("BOOL", (3,), (0, 3))}
    path = craft(tmp_path / "f", header, bytes([0, 1, 2]))
    refused(path, CorruptFileError, "BOOL", require_checksum=False)


# ------------------------------------------------------------------ corruption
@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.safetensors"
    write_file(path, {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(2, np.float32)})
    return path, path.read_bytes()


def test_every_truncation_is_detected(small_file):
    path, raw = small_file
    for cut in range(len(raw)):
        path.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            read_file(path)


def test_every_single_bit_flip_is_detected(small_file):
    path, raw = small_file
    for position in range(len(raw)):
        flipped = bytearray(raw)
        flipped[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            read_file(path)


@pytest.mark.parametrize("extra", [b"\0", b" ", b"\0" * 8, b"junk" * 100])
def test_extended_files_are_detected(small_file, extra):
    path, raw = small_file
    path.write_bytes(raw + extra)
    with pytest.raises(CorruptFileError, match="trailing"):
        read_file(path)


def test_altered_metadata_fails_the_header_checksum(small_file):
    path, raw = small_file
    path.write_bytes(
        raw.replace(b'"dtype":"F64","shape":[2,3]', b'"dtype":"I64","shape":[2,3]')
    )
    with pytest.raises(CorruptFileError, match="header does not match its SHA-256"):
        read_file(path)


# ------------------------------------------------------------------ no pickle path
BANNED_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "marshal",
}


def pickle_paths(source: str) -> list[str]:
    """Imports of pickle-like modules, ``allow_pickle=`` other than False, and
    ``torch.load`` / ``pickle.load`` calls in Python ``source``."""
    found = [hit for node in ast.walk(ast.parse(source)) for hit in _hits(node)]
    return found + re.findall(r"allow_pickle\s*=\s*True|torch\.load\s*\(", source)


def _hits(node) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
    if isinstance(node, ast.ImportFrom):
        return (
            [node.module] if (node.module or "").split(".")[0] in BANNED_MODULES else []
        )
    if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
        safe = isinstance(node.value, ast.Constant) and node.value.value is False
        return [] if safe else ["allow_pickle"]
    loader = isinstance(node, ast.Attribute) and node.attr in ("load", "loads")
    if loader and isinstance(node.value, ast.Name):
        return [f"{node.value.id}.{node.attr}"] * (node.value.id in ("torch", "pickle"))
    return []


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "from joblib import load",
        "np.load(f, allow_pickle=True)",
        "torch.load(path)",
        "x = pickle.loads(b)",
        "np.load(f, allow_pickle=flag)",
    ],
)
def test_the_pickle_detector_flags_known_paths(snippet):
    assert pickle_paths(snippet)


def test_the_package_has_no_pickle_path():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    hits = {str(f): pickle_paths(f.read_text()) for f in files}
    assert {f: h for f, h in hits.items() if h} == {}


# ------------------------------------------------------------------ fuzzing
@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    X = np.random.default_rng(0).normal(size=(32, 4))
    model = gpunn.Sequential(
        [
            gpunn.Standardize(),
            gpunn.Dense(5, activation="relu"),
            gpunn.BatchNorm(),
            gpunn.Dense(3),
        ],
        input_dim=4,
        seed=0,
    )
    model.adapt(X)
    model.compile("softmax_cross_entropy", "adam")
    path = tmp_path_factory.mktemp("fuzz") / "model.safetensors"
    model.save(path)
    return path, path.read_bytes()


def mutations(size: int):
    position = st.integers(0, size - 1)
    chunk = st.binary(min_size=1, max_size=12)
    return st.one_of(
        st.tuples(st.just("flip"), position, st.integers(0, 7)),
        st.tuples(st.just("truncate"), position),
        st.tuples(st.just("append"), chunk),
        st.tuples(st.just("overwrite"), position, chunk),
        st.tuples(st.just("insert"), position, chunk),
        st.tuples(st.just("delete"), position, st.integers(1, 64)),
    )


def mutate(raw: bytes, changes) -> bytes:
    data = bytearray(raw)
    for kind, *args in changes:
        at = min(args[0], len(data)) if kind != "append" else len(data)
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << args[1]
        elif kind == "truncate":
            del data[at:]
        elif kind == "append":
            data += args[0]
        elif kind == "overwrite":
            data[at : at + len(args[1])] = args[1]
        elif kind == "insert":
            data[at:at] = args[1]
        elif kind == "delete":
            del data[at : at + args[1]]
    return bytes(data)


@FUZZ
@given(data=st.data())
def test_fuzzed_files_raise_only_checkpoint_errors(tmp_path, model_file, data):
    _, raw = model_file
    changes = data.draw(st.lists(mutations(len(raw)), min_size=1, max_size=3))
    mutated = mutate(raw, changes)
    path = tmp_path / "mutated.safetensors"
    path.write_bytes(mutated)
    for load in (read_file, gpunn.load):
        try:
            load(path)
        except CheckpointError as exc:
            assert str(path) in str(exc)
        else:
            assert mutated == raw, f"{changes} was accepted"


def json_values():
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.sampled_from(["Dense", "relu", "float16", "adam", "top_k_accuracy"]),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=6,
    )


def config_paths(value, prefix=()):
    """Every path (tuple of keys/indexes) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from config_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from config_paths(item, (*prefix, index))


@FUZZ
@given(data=st.data())
def test_tampered_configs_raise_only_checkpoint_errors(tmp_path, model_file, data):
    """Valid checksums, a changed model configuration: gpunn.load either builds a
    model that predicts or raises CheckpointError naming the path."""
    tensors, metadata = read_file(model_file[0])
    saved = json.loads(metadata["gpunn.model"])
    where = data.draw(st.sampled_from(list(config_paths(saved))))
    replacement = data.draw(json_values())
    if not where:
        saved = replacement
    else:
        parent = saved
        for key in where[:-1]:
            parent = parent[key]
        parent[where[-1]] = replacement
    metadata["gpunn.model"] = json.dumps(saved)
    path = tmp_path / "tampered.safetensors"
    write_file(path, tensors, metadata)
    try:
        model = gpunn.load(path, backend="cpu")
    except CheckpointError as exc:
        assert str(path) in str(exc)
    else:
        assert np.isfinite(model.predict(np.ones((2, 4)))).all()
