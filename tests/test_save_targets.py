"""Saving writes files, never anything else (issue "Reliability, round two", rule 8):
a symbolic link is followed (the link stays, its target is replaced atomically),
anything that is not a regular file is refused, missing parent directories are
created, and errors name the path the user gave, not a hidden temp file."""

import errno
import os

import numpy as np
import pytest

import gpunn
from gpunn.checkpointing import ModelCheckpoint
from gpunn.layers import Dense
from gpunn.persistence.safetensors import read_file, write_file

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX links and FIFOs")


def model(seed=0):
    net = gpunn.Sequential([Dense(3)], input_dim=2, seed=seed, backend="cpu")
    net.compile("softmax_cross_entropy", "sgd")
    return net


def same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def listing(*folders) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.iterdir())


@pytest.mark.parametrize("relative", [False, True])
def test_a_symbolic_link_stays_and_its_target_is_replaced(tmp_path, relative):
    data, links = tmp_path / "data", tmp_path / "links"
    data.mkdir()
    links.mkdir()
    model(0).save(data / "best.st")
    link = links / "latest.st"
    text = str(data / "best.st")
    text = os.path.relpath(text, links) if relative else text
    link.symlink_to(text)
    new = model(1)
    new.save(link)
    assert link.is_symlink() and os.readlink(link) == text
    assert same_weights(gpunn.load(data / "best.st").get_weights(), new.get_weights())
    assert listing(data, links) == [str(data / "best.st"), str(link)]  # no temp left


def test_a_dangling_link_and_a_chain_of_links_are_followed(tmp_path):
    target = tmp_path / "real.st"
    first, second = tmp_path / "a.st", tmp_path / "b.st"
    first.symlink_to(target)  # dangling until the save
    second.symlink_to(first)
    write_file(second, {"w": np.arange(3.0)})
    assert first.is_symlink() and second.is_symlink() and target.is_file()
    assert read_file(second)[0]["w"].tolist() == [0.0, 1.0, 2.0]


def _fifo(path):
    os.mkfifo(path)
    return path


def _dir(path):
    path.mkdir()
    (path / "inside").write_text("keep")
    return path


def _link_to_dir(path):
    _dir(path.parent / "real_dir")
    path.symlink_to(path.parent / "real_dir")
    return path


@pytest.mark.parametrize(
    ("make", "error", "what"),
    [
        (_dir, IsADirectoryError, "a directory"),
        (_link_to_dir, IsADirectoryError, "a directory"),
        (_fifo, FileExistsError, "a FIFO"),
    ],
)
def test_anything_but_a_regular_file_is_refused(tmp_path, make, error, what):
    path = make(tmp_path / "out.st")
    before = listing(tmp_path)
    with pytest.raises(error, match=what) as info:
        model().save(path)
    assert info.value.filename == str(path)
    assert listing(tmp_path) == before  # nothing replaced, no temp left
    if path.is_dir():
        assert (path / "inside").read_text() == "keep"


def test_missing_parent_directories_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "model.st"
    model().save(path)
    assert same_weights(gpunn.load(path).get_weights(), model().get_weights())
    X, y = np.zeros((8, 2)), np.arange(8) % 3
    save = ModelCheckpoint(tmp_path / "run" / "ckpt-{epoch}.st")
    model().fit(X, y, epochs=1, verbose=0, callbacks=[save])
    assert (tmp_path / "run" / "ckpt-1.st").is_file()


def test_a_parent_that_is_a_file_is_named(tmp_path):
    (tmp_path / "a").write_text("a file")
    with pytest.raises(OSError) as info:
        model().save(tmp_path / "a" / "model.st")
    assert info.value.filename == str(tmp_path / "a" / "model.st")


@pytest.mark.parametrize("call", ["open", "write", "replace"])
def test_errors_name_the_path_given_not_the_temp_file(tmp_path, monkeypatch, call):
    real = getattr(os, call)

    def failing(*args, **kwargs):
        if call == "open" and not str(args[0]).endswith(".tmp"):
            return real(*args, **kwargs)
        raise PermissionError(errno.EACCES, "Permission denied", str(args[0]))

    monkeypatch.setattr(os, call, failing)
    given = os.path.join(os.path.relpath(tmp_path), "model.st")
    with pytest.raises(PermissionError) as info:
        model().save(given)
    monkeypatch.undo()
    assert info.value.filename == given and info.value.filename2 is None
    assert ".tmp" not in str(info.value) and given in str(info.value)
    assert os.listdir(tmp_path) == []


def test_a_failed_rename_names_only_the_path_given(tmp_path, monkeypatch):
    def replace(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", src, None, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(PermissionError) as info:
        write_file(tmp_path / "m.st", {"w": np.zeros(2)})
    monkeypatch.undo()
    assert str(info.value) == f"[Errno 13] Permission denied: '{tmp_path / 'm.st'}'"
