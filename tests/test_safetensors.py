"""The safetensors file layer: format, round trips, interoperability with the
``safetensors`` package, atomic writes (SIGKILL, disk full, permission denied) and
stale temp files."""

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gpunn.errors import CheckpointError, CorruptFileError
from gpunn.persistence import atomic
from gpunn.persistence.safetensors import (
    DTYPES,
    clean_stale_temps,
    read_file,
    write_file,
)

REPO = Path(__file__).resolve().parents[1]


def sample_tensors(rng):
    """One tensor per allowed dtype, plus 0-d, empty and 3-d shapes."""
    tensors = {
        f"t.{code.lower()}": (rng.normal(size=(3, 5)) * 50).astype(np.dtype(d))
        for code, d in DTYPES.items()
        if code != "BOOL"
    }
    tensors["t.bool"] = rng.normal(size=(4,)) > 0
    tensors["scalar"] = np.array(2.5, np.float64)
    tensors["empty"] = np.zeros((0, 7), np.float32)
    tensors["cube"] = rng.normal(size=(2, 3, 4)).astype(np.float32)
    return tensors


def assert_same(actual: dict, expected: dict):
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype.newbyteorder("="), key
        assert actual[key].shape == value.shape, key
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


def test_round_trip_every_dtype_and_shape(tmp_path, rng):
    tensors = sample_tensors(rng)
    path = tmp_path / "a.safetensors"
    write_file(path, tensors, {"note": "héllo", "json": '{"a": [1, 2]}'})
    loaded, metadata = read_file(path)
    assert_same(loaded, tensors)
    assert metadata == {"note": "héllo", "json": '{"a": [1, 2]}'}
    for array in loaded.values():
        assert array.dtype.isnative and array.flags.writeable
        assert array.flags.aligned


def test_file_layout_follows_the_format(tmp_path):
    path = tmp_path / "a.safetensors"
    write_file(path, {"b": np.arange(3, dtype=np.int8), "a": np.ones(2)}, {})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert n % 8 == 0 and raw[8 : 8 + n].decode().rstrip(" ").endswith("}")
    header = json.loads(raw[8 : 8 + n])
    assert header["a"] == {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}
    assert header["b"] == {"dtype": "I8", "shape": [3], "data_offsets": [16, 19]}
    assert raw[8 + n :] == np.ones(2).astype("<f8").tobytes() + bytes([0, 1, 2])
    import hashlib

    digest = header["__metadata__"]["gpunn.sha256"]
    assert digest == hashlib.sha256(raw[8 + n :]).hexdigest()


def test_non_contiguous_and_big_endian_arrays_are_saved_by_value(tmp_path, rng):
    base = rng.normal(size=(6, 8))
    tensors = {
        "transposed": base.T,
        "strided": base[::2, 1::3],
        "fortran": np.asfortranarray(base.astype(np.float32)),
        "negative_stride": base[::-1],
        "big_endian": base.astype(">f8"),
    }
    assert not tensors["transposed"].flags.c_contiguous
    path = tmp_path / "nc.safetensors"
    write_file(path, tensors)
    assert_same(read_file(path)[0], tensors)


@pytest.mark.parametrize(
    "tensors, metadata, error",
    [
        ({"x": np.zeros(2, np.complex64)}, {}, TypeError),
        ({"x": np.array(["a"], dtype=object)}, {}, TypeError),
        ({"x": [1.0, 2.0]}, {}, TypeError),
        ({"": np.zeros(2)}, {}, ValueError),
        ({"__metadata__": np.zeros(2)}, {}, ValueError),
        ({3: np.zeros(2)}, {}, ValueError),
        ({"x": np.zeros(2)}, {"k": 1}, TypeError),
        ({"x": np.zeros(2)}, {"gpunn.sha256": "0"}, ValueError),
        ([np.zeros(2)], {}, TypeError),
    ],
)
def test_bad_arguments_raise_and_write_nothing(tmp_path, tensors, metadata, error):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(error):
        write_file(path, tensors, metadata)
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["x.safetensors"]


def test_too_many_tensors_is_refused_at_write(tmp_path):
    tensors = {f"t{i}": np.zeros(0) for i in range(10_001)}
    with pytest.raises(ValueError, match="at most 10000"):
        write_file(tmp_path / "x.safetensors", tensors)


def test_missing_file_raises_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "absent.safetensors")


# ------------------------------------------------------------------ interoperability
def test_the_safetensors_package_reads_our_files(tmp_path, rng):
    st_numpy = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors(rng)
    tensors["transposed"] = rng.normal(size=(3, 4)).T
    path = tmp_path / "ours.safetensors"
    write_file(path, tensors, {"k": "v"})
    assert_same(st_numpy.load_file(str(path)), tensors)


def test_we_read_files_of_the_safetensors_package(tmp_path, rng):
    st_numpy = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors(rng)
    path = tmp_path / "theirs.safetensors"
    st_numpy.save_file(tensors, str(path), metadata={"k": "v"})
    with pytest.raises(CorruptFileError, match="checksum"):
        read_file(path)  # gpunn's checksums are required by default
    loaded, metadata = read_file(path, require_checksum=False)
    assert_same(loaded, tensors)
    assert metadata == {"k": "v"}


# ------------------------------------------------------------------ atomic writes
def _old_file(tmp_path):
    path = tmp_path / "model.safetensors"
    write_file(path, {"w": np.arange(4.0)}, {"version": "old"})
    return path, path.read_bytes()


def _assert_old_file_intact(path, old_bytes):
    assert path.read_bytes() == old_bytes
    tensors, metadata = read_file(path)
    np.testing.assert_array_equal(tensors["w"], np.arange(4.0))
    assert metadata == {"version": "old"}


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from gpunn.persistence.safetensors import write_file

    real_write = os.write

    def stalled_write(fd, data):
        done = real_write(fd, memoryview(data)[: max(len(data) // 2, 1)])
        print("writing", flush=True)
        time.sleep(60)  # killed here, mid-write
        return done

    os.write = stalled_write
    write_file(sys.argv[1], {"w": np.zeros(100_000)}, {"version": "new"})
    """
)


def _kill_mid_write(path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_sigkill_mid_write_keeps_the_previous_file(tmp_path):
    path, old_bytes = _old_file(tmp_path)
    _kill_mid_write(path)
    _assert_old_file_intact(path, old_bytes)
    temps = [name for name in os.listdir(tmp_path) if name != path.name]
    assert len(temps) == 1 and temps[0].startswith(".model.safetensors.")
    assert clean_stale_temps(tmp_path) == [str(tmp_path / temps[0])]
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_sigkill_during_the_first_save_leaves_no_file(tmp_path):
    path = tmp_path / "model.safetensors"
    _kill_mid_write(path)
    assert not path.exists()


def _fail(error):
    def fake(*args, **kwargs):
        raise error

    return fake


def test_disk_full_raises_the_original_error(tmp_path, monkeypatch):
    path, old_bytes = _old_file(tmp_path)
    error = OSError(errno.ENOSPC, "No space left on device")
    real_write = os.write

    def full_disk(fd, data):
        real_write(fd, memoryview(data)[:3])
        raise error

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError) as info:
        write_file(path, {"w": np.zeros(1000)}, {"version": "new"})
    monkeypatch.undo()
    assert info.value is error
    _assert_old_file_intact(path, old_bytes)
    assert os.listdir(tmp_path) == [path.name]  # the temp file is gone


@pytest.mark.parametrize(
    "call, error",
    [
        ("replace", PermissionError(errno.EACCES, "Permission denied")),
        ("open", PermissionError(errno.EACCES, "Permission denied")),
        ("fsync", OSError(errno.EIO, "Input/output error")),
    ],
)
def test_failed_steps_raise_the_original_error(tmp_path, monkeypatch, call, error):
    path, old_bytes = _old_file(tmp_path)
    monkeypatch.setattr(os, call, _fail(error))
    with pytest.raises(OSError) as info:
        write_file(path, {"w": np.zeros(10)}, {"version": "new"})
    monkeypatch.undo()
    assert info.value is error
    _assert_old_file_intact(path, old_bytes)
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.skipif(
    os.name == "nt" or os.geteuid() == 0, reason="root ignores directory permissions"
)
def test_read_only_directory_raises_permission_error(tmp_path):
    path, old_bytes = _old_file(tmp_path)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            write_file(path, {"w": np.zeros(10)}, {"version": "new"})
    finally:
        tmp_path.chmod(0o755)
    _assert_old_file_intact(path, old_bytes)


def test_clean_stale_temps_removes_only_writer_temps(tmp_path):
    keep = ["model.safetensors", ".hidden", "x.tmp", ".a.safetensors.tmp"]
    for name in keep:
        (tmp_path / name).write_bytes(b"keep")
    (tmp_path / ".dir.0123456789abcdef.tmp").mkdir()
    stale = [
        Path(atomic.temp_path(str(tmp_path / "model.safetensors"))),
        Path(atomic.temp_path(str(tmp_path / "other.safetensors"))),
    ]
    for temp in stale:
        temp.write_bytes(b"partial")
    assert clean_stale_temps(tmp_path, name="model.safetensors", min_age=3600) == []
    assert clean_stale_temps(tmp_path, name="model.safetensors") == [str(stale[0])]
    assert clean_stale_temps(tmp_path) == [str(stale[1])]
    assert sorted(os.listdir(tmp_path)) == sorted([*keep, ".dir.0123456789abcdef.tmp"])


def test_a_stale_temp_does_not_disturb_reading_or_writing(tmp_path):
    path, _ = _old_file(tmp_path)
    Path(atomic.temp_path(str(path))).write_bytes(b"\x00garbage")
    write_file(path, {"w": np.ones(2)}, {})
    np.testing.assert_array_equal(read_file(path)[0]["w"], np.ones(2))


def test_errors_are_checkpoint_errors_and_value_errors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x01\x00")
    with pytest.raises(CheckpointError, match=str(path)) as info:
        read_file(path)
    assert isinstance(info.value, ValueError)


def test_the_next_write_removes_old_temps_of_the_same_file(tmp_path):
    path, _ = _old_file(tmp_path)
    old = Path(atomic.temp_path(str(path)))
    fresh = Path(atomic.temp_path(str(path)))  # may be a live writer's: kept
    other = Path(atomic.temp_path(str(tmp_path / "other.safetensors")))
    for temp in (old, fresh, other):
        temp.write_bytes(b"partial")
    long_ago = time.time() - atomic.STALE_AFTER - 1
    os.utime(old, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    write_file(path, {"w": np.ones(2)}, {})
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, fresh.name, other.name])
