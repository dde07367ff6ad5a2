"""Bundled digits and the data helpers."""

import numpy as np
import pytest

from gpunn import datasets


def test_digits_is_the_uci_set():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16 and (X == np.round(X)).all()
    np.testing.assert_array_equal(
        np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    )
    assert X.sum() == 561718 and y[:10].tolist() == list(range(10))


def test_split_is_seeded_stratified_and_complete():
    X, y = datasets.load_digits()
    a = datasets.train_test_split(X, y, 0.2, seed=3, stratify=True)
    b = datasets.train_test_split(X, y, 0.2, seed=3, stratify=True)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    X_tr, X_te, _, y_te = a
    assert len(X_tr) + len(X_te) == 1797 and len(y_te) == len(X_te)
    shares = np.bincount(y_te) / np.bincount(y)
    assert np.abs(shares - 0.2).max() < 0.01
    rows = {tuple(r) for r in X_tr} | {tuple(r) for r in X_te}
    assert len(rows) == len({tuple(r) for r in X})  # nothing lost or duplicated
    c = datasets.train_test_split(X, y, 0.25, seed=4)
    assert len(c[1]) == round(1797 * 0.25)
    with pytest.raises(ValueError, match="test_size must be in"):
        datasets.train_test_split(X, y, 1.5)
    with pytest.raises(ValueError, match="same length"):
        datasets.train_test_split(X, y[:5])


def test_standardize_uses_training_statistics():
    rng = np.random.default_rng(0)
    train = rng.normal(5, 3, (200, 4))
    train[:, 2] = 7.0  # a constant feature is only centred
    test = rng.normal(5, 3, (50, 4))
    s_train, s_test = datasets.standardize(train, test)
    np.testing.assert_allclose(s_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(s_train.std(0), [1, 1, 0, 1], atol=1e-12)
    np.testing.assert_allclose(
        s_test, (test - train.mean(0)) / np.where(train.std(0) == 0, 1, train.std(0))
    )
    assert isinstance(datasets.standardize(train), np.ndarray)


def test_load_file_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", data=np.ones(3))
    with pytest.raises(ValueError, match="must hold arrays 'X' and 'y'"):
        datasets.load_file(tmp_path / "bad.npz")
    (tmp_path / "one.csv").write_text("1\n2\n")
    with pytest.raises(ValueError, match="needs at least 2 columns"):
        datasets.load_file(tmp_path / "one.csv")
