"""Bundled data and small data helpers.

``load_digits()`` returns the UCI handwritten digits (1797 x 64, ten classes) shipped
inside the package (CC BY 4.0, see ``LICENSE-DATA.md`` beside it).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from gpunn.checks import check_real
from gpunn.errors import ArgumentError

__all__ = ["load_digits", "load_file", "standardize", "train_test_split"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI handwritten-digits set, as scikit-learn's ``load_digits``.

    Returns: ``(X, y)``: X float64 ``(1797, 64)`` with pixel counts 0..16, y int64
    ``(1797,)`` with labels 0..9.
    """
    ref = resources.files(__package__).joinpath("digits.npz")
    with ref.open("rb") as f, np.load(f, allow_pickle=False) as data:
        return data["X"].astype(np.float64), data["y"].astype(np.int64)


def load_file(path) -> tuple[np.ndarray, np.ndarray]:
    """Loads ``(X, y)`` from ``.npz`` (arrays ``X`` and ``y``) or ``.csv`` (numbers,
    label in the last column, an optional header line)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            missing = {"X", "y"} - set(data.files)
            if missing:
                raise ArgumentError(
                    f"{path} must hold arrays 'X' and 'y', missing {sorted(missing)} "
                    f"(found {sorted(data.files)})"
                )
            return data["X"], data["y"]
    if path.suffix == ".csv":
        with path.open() as f:
            first = f.readline()
        header = any(c.isalpha() and c not in "eE" for c in first)
        table = np.loadtxt(path, delimiter=",", skiprows=int(header), ndmin=2)
        if table.shape[1] < 2:
            raise ArgumentError(
                f"{path} needs at least 2 columns (features, label), "
                f"got {table.shape[1]}"
            )
        return table[:, :-1], table[:, -1]
    raise ArgumentError(f"path must end in .npz or .csv, got {path.name!r}")


def train_test_split(
    X, y, test_size: float = 0.25, seed: int | None = None, stratify: bool = False
):
    """Splits into ``(X_train, X_test, y_train, y_test)`` after a seeded shuffle.

    Args:
        test_size: fraction in (0, 1) that goes to the test part. Default: 0.25.
        seed: seed of the shuffle (a new ``numpy.random.Generator``; no global RNG).
        stratify: keep each class's share of ``y`` equal in both parts.
    """
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ArgumentError(
            f"X and y must have the same length, got {len(X)} and {len(y)}"
        )
    test_size = check_real("test_size", test_size, 0, 1, lo_open=True, hi_open=True)
    rng = np.random.default_rng(seed)
    if stratify:
        test = np.concatenate(
            [
                idx[: round(len(idx) * test_size)]
                for idx in (
                    rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)
                )
            ]
        )
    else:
        test = rng.permutation(len(X))[: round(len(X) * test_size)]
    if len(test) in (0, len(X)):
        raise ArgumentError(
            f"test_size={test_size} leaves an empty part of {len(X)} samples"
        )
    mask = np.zeros(len(X), dtype=bool)
    mask[test] = True
    train, test = rng.permutation(np.flatnonzero(~mask)), rng.permutation(test)
    return X[train], X[test], y[train], y[test]


def standardize(X_train, *others):
    """Scales features to zero mean and unit variance with the statistics of
    ``X_train`` (constant features are only centred). Returns the standardized
    ``X_train`` and each of ``others``, as a tuple when ``others`` are given."""
    X_train = np.asarray(X_train, dtype=np.float64)
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0
    out = tuple(
        (np.asarray(x, dtype=np.float64) - mean) / std for x in (X_train, *others)
    )
    return out if others else out[0]
