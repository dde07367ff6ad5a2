"""Standardize and Whiten against float64 references: fitted statistics, forward and
backward, whitened covariance, adapt before/after build, state, and errors."""

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close

import gpunn
from gpunn.errors import InvalidInputError, NotBuiltError
from gpunn.layers import Dense, Standardize, Whiten


def data(rng, n=200):
    """Correlated features with different means and scales, and a constant one."""
    z = rng.standard_normal((n, 4)) @ np.array(
        [[1.0, 0.5, 0, 0], [0, 2.0, 0.3, 0], [0, 0, 0.5, -0.2], [0.4, 0, 0, 1.5]]
    )
    X = z + np.array([2.0, -1.0, 0.5, 3.0])
    return np.column_stack([X, np.full(n, 7.0)])


def built(layer, backend, dtype, n_in):
    gpunn.Sequential([layer], input_dim=n_in, dtype=dtype, backend=backend)
    layer.needs_dx = True
    return layer


def host(backend, x):
    return np.asarray(backend.to_numpy(x), dtype=np.float64)


def ref_whitening(X, method, eps, k=None):
    """W from the SVD of the centered data (independent of the eigh route)."""
    centered = X - X.sum(axis=0) / len(X)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    w = vt.T / np.sqrt(s**2 / len(X) + eps)
    return w @ vt if method == "zca" else w[:, :k]


# ------------------------------------------------------------------ Standardize
def test_standardize_matches_the_reference(backend, dtype, rng):
    X = data(rng)
    X.flags.writeable = False  # adapt never changes the caller's data
    layer = Standardize()
    layer.adapt(X)
    built(layer, backend, dtype, 5)
    mean = X.sum(axis=0) / len(X)
    std = np.sqrt(((X - mean) ** 2).sum(axis=0) / len(X))
    std[4] = 1.0  # the constant feature keeps scale 1
    x = (rng.standard_normal((9, 5)) * 2 + 1).astype(dtype)
    dy = rng.standard_normal((9, 5)).astype(dtype)
    for training in (True, False):
        y = layer.forward(backend.asarray(x), training)
        assert y.dtype == dtype
        assert_close(host(backend, y), (x - mean) / std, dtype)
    dx = layer.backward(backend.asarray(dy))
    assert dx.dtype == dtype
    assert_close(host(backend, dx), dy / std, dtype)
    state = layer.get_state()
    assert_close(state["mean"], mean, "float64")
    assert_close(state["scale"], std, "float64")


def test_adapt_accepts_device_data_and_predict_applies_the_layer(backend, rng):
    X = data(rng)
    layer = Standardize()
    model = gpunn.Sequential([layer], input_dim=5, dtype="float64", backend=backend)
    layer.adapt(backend.asarray(X))
    Y = model.predict(X)
    assert_close(Y.mean(axis=0), np.zeros(5), "float64")
    assert_close(Y[:, :4].std(axis=0), np.ones(4), "float64")


def test_adapt_before_and_after_build_agree(backend, dtype, rng):
    X = data(rng)
    early, late = Whiten("zca"), Whiten("zca")
    early.adapt(X)  # before build: the data fixes the width
    a = gpunn.Sequential([early, Dense(3)], dtype=dtype, backend=backend, seed=1)
    b = gpunn.Sequential([late, Dense(3)], dtype=dtype, backend=backend, seed=1)
    b.build(5)
    late.adapt(X)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    components = late._device["components"]
    late.adapt(X[:50] * 2)  # after a forward: the device arrays change in place
    assert late._device["components"] is components
    assert not np.allclose(a.predict(X), b.predict(X))


# ------------------------------------------------------------------ Whiten
@pytest.mark.parametrize("method", ["pca", "zca"])
def test_whitened_covariance_is_the_identity(backend, dtype, rng, method):
    X = data(rng)[:, :4]
    layer = Whiten(method)
    layer.adapt(X)
    Y = gpunn.Sequential([layer], dtype=dtype, backend=backend).predict(X)
    assert Y.dtype == dtype
    centered = Y.astype(np.float64) - Y.mean(axis=0)
    np.testing.assert_allclose(centered.T @ centered / len(Y), np.eye(4), atol=1e-3)
    np.testing.assert_allclose(Y.mean(axis=0), np.zeros(4), atol=1e-5)


def test_zca_matrix_is_symmetric_and_matches_the_reference(rng):
    X = data(rng)
    layer = Whiten("zca", eps=1e-3)
    layer.adapt(X)
    w = layer.get_state()["components"]
    np.testing.assert_allclose(w, w.T, atol=1e-12)
    assert_close(w, ref_whitening(X, "zca", 1e-3), "float64", REDUCTION_TOL)


@pytest.mark.parametrize("k", [None, 2])
def test_pca_components_match_the_reference_up_to_sign(rng, k):
    X = data(rng)[:, :4]
    layer = Whiten("pca", n_components=k)
    layer.adapt(X)
    w = layer.get_state()["components"]
    expected = ref_whitening(X, "pca", 1e-5, k)
    assert w.shape == expected.shape == (4, k or 4)
    signs = np.sign((w * expected).sum(axis=0))
    assert_close(w, expected * signs, "float64", REDUCTION_TOL)
    top = np.abs(w).argmax(axis=0)
    assert (w[top, np.arange(w.shape[1])] > 0).all()  # the sign convention


@pytest.mark.parametrize("method, k", [("pca", 3), ("zca", None)])
def test_whiten_forward_and_backward_match_the_reference(
    backend, dtype, rng, method, k
):
    X = data(rng)
    layer = Whiten(method, n_components=k)
    layer.adapt(X)
    built(layer, backend, dtype, 5)
    state = layer.get_state()
    x = (rng.standard_normal((8, 5)) + 2).astype(dtype)
    dy = rng.standard_normal((8, k or 5)).astype(dtype)
    y = layer.forward(backend.asarray(x), training=True)
    dx = layer.backward(backend.asarray(dy))
    assert y.dtype == dx.dtype == dtype and y.shape == (8, k or 5)
    w = state["components"]
    assert_close(host(backend, y), (x - state["mean"]) @ w, dtype, REDUCTION_TOL)
    assert_close(host(backend, dx), dy @ w.T, dtype, REDUCTION_TOL)


@pytest.mark.parametrize(
    "layer", [Standardize(), Whiten("pca", n_components=3), Whiten("zca")], ids=repr
)
def test_gradients_match_finite_differences(layer, rng):
    layer.adapt(data(rng))
    assert gpunn.gradcheck(layer, rng.standard_normal((6, 5)))


# ------------------------------------------------------------------ state
@pytest.mark.parametrize("make", [Standardize, lambda: Whiten("pca", n_components=2)])
def test_state_round_trip(backend, rng, make):
    X, x = data(rng), rng.standard_normal((4, 5))
    fitted, restored = make(), make()
    fitted.adapt(X)
    restored.set_state(fitted.get_state())  # before build
    y = built(fitted, backend, "float64", 5).forward(backend.asarray(x))
    again = built(restored, backend, "float64", 5).forward(backend.asarray(x))
    np.testing.assert_array_equal(host(backend, y), host(backend, again))
    device = dict(restored._device)
    restored.set_state({k: v * 2 for k, v in fitted.get_state().items()})
    assert all(restored._device[k] is device[k] for k in device)  # in place


def test_set_state_validates_before_changing_anything(rng):
    layer = Standardize()
    layer.adapt(data(rng))
    state = layer.get_state()
    bad = [
        ({"mean": state["mean"]}, "needs the entries"),
        ({**state, "scale": state["scale"][:3]}, r"must have shape \(5,\)"),
        ({**state, "mean": np.full(5, np.inf)}, "NaN or infinity"),
        ({**state, "scale": np.zeros(5)}, "> 0"),
    ]
    for wrong, match in bad:
        with pytest.raises(ValueError, match=match):
            layer.set_state(wrong)
        np.testing.assert_array_equal(layer.get_state()["scale"], state["scale"])
    assert Standardize().get_state() == {}


# ------------------------------------------------------------------ errors
def test_forward_before_adapt_says_to_call_adapt(backend):
    layer = built(Standardize(), backend, "float32", 3)
    with pytest.raises(NotBuiltError, match=r"call layer.adapt\(X\)"):
        layer.forward(backend.asarray(np.ones((2, 3), np.float32)))


@pytest.mark.parametrize(
    "X, match",
    [
        (np.ones((10, 4)), r"expects 5 .*got shape \(10, 4\)"),
        (np.ones(5), "must be 2-D"),
        (np.ones((1, 5)), r"at least 2 samples, got X of shape \(1, 5\)"),
        (np.full((3, 5), np.nan), "NaN"),
        (np.full((3, 5), np.inf), "infinity"),
    ],
)
def test_adapt_refuses_bad_data_and_keeps_the_statistics(backend, rng, X, match):
    layer = Whiten()
    layer.adapt(data(rng))
    built(layer, backend, "float64", 5)
    before = layer.get_state()
    with pytest.raises(InvalidInputError, match=match):
        layer.adapt(X)
    np.testing.assert_array_equal(layer.get_state()["components"], before["components"])


def test_build_refuses_another_width_than_adapted(rng):
    layer = Standardize()
    layer.adapt(data(rng))
    with pytest.raises(InvalidInputError, match="adapted to 5 features, but its input"):
        gpunn.Sequential([layer], input_dim=4, backend="cpu")
    with pytest.raises(InvalidInputError, match="n_components must be <="):
        Whiten(n_components=6).adapt(data(rng))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "svd"}, "method must be"),
        ({"eps": 0.0}, "eps"),
        ({"n_components": 0}, "n_components"),
        ({"method": "zca", "n_components": 2}, "only for method='pca'"),
    ],
)
def test_whiten_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Whiten(**kwargs)


def test_config_round_trip():
    layer = Whiten("pca", eps=1e-3, n_components=2, name="w")
    assert Whiten(**layer.get_config()).get_config() == layer.get_config()
    assert Standardize(**Standardize().get_config()).get_config() == {"name": None}
