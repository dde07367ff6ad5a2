"""Weight regularizers (Keras semantics) and Dense's penalty hook: penalty values
against float64 references, gradients added after the data gradients, finite
differences of the penalty, configs, and bad strengths."""

import json
import math

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close
from test_activations import standalone

import gpunn
from gpunn import layers, regularizers
from gpunn.backends import get_backend
from gpunn.regularizers import L1, L1L2, L2


def ref_penalty(w, l1, l2):
    return l1 * math.fsum(abs(v) for v in w.ravel()) + l2 * math.fsum(
        v * v for v in w.ravel()
    )


def ref_grad(w, l1, l2):
    return np.vectorize(lambda v: l1 * (v > 0) - l1 * (v < 0) + 2 * l2 * v)(w)


@pytest.mark.parametrize(
    "reg, l1, l2",
    [(L1(), 0.01, 0.0), (L2(0.3), 0.0, 0.3), (L1L2(0.2, 0.05), 0.2, 0.05)],
    ids=repr,
)
def test_penalty_and_gradient(backend, dtype, rng, reg, l1, l2):
    w = rng.standard_normal((7, 5)).astype(dtype)
    w[0, :2] = 0.0  # sign(0) = 0: no L1 gradient at 0
    dw0 = rng.standard_normal((7, 5)).astype(dtype)
    penalty = reg.penalty(backend, backend.asarray(w))
    assert penalty.dtype == dtype and penalty.shape == ()
    assert_close(
        float(penalty), ref_penalty(w.astype(np.float64), l1, l2), dtype, REDUCTION_TOL
    )
    dw = backend.asarray(dw0.copy())
    reg.add_grad_(backend, backend.asarray(w), dw)
    assert dw.dtype == dtype
    want = dw0.astype(np.float64) + ref_grad(w.astype(np.float64), l1, l2)
    assert_close(backend.to_numpy(dw), want, dtype)


def test_zero_strengths_give_a_zero_penalty(backend, dtype):
    w = backend.asarray(np.ones((2, 2), dtype))
    penalty = L1L2().penalty(backend, w)
    assert float(penalty) == 0.0 and penalty.dtype == dtype


def dense(backend, dtype=np.float64, **kwargs):
    layer = standalone(
        layers.Dense(4, bias_init="uniform", **kwargs), backend, dtype, 3
    )
    w = backend.to_numpy(layer.params["kernel"])
    w = np.where(np.abs(w) < 0.05, 0.1, w)  # away from the L1 kink
    layer.params["kernel"][...] = backend.asarray(w.astype(dtype))
    return layer


def test_dense_penalty_sums_kernel_and_bias(backend, dtype):
    layer = dense(backend, dtype, kernel_regularizer=L2(0.1), bias_regularizer="l1")
    w, b = (
        backend.to_numpy(layer.params[k]).astype(np.float64) for k in ("kernel", "bias")
    )
    penalty = layer.penalty()
    assert penalty.dtype == dtype
    want = ref_penalty(w, 0.0, 0.1) + ref_penalty(b, 0.01, 0.0)
    assert_close(float(penalty), want, dtype, REDUCTION_TOL)
    assert dense(backend).penalty() is None


def test_dense_backward_adds_penalty_grads_after_the_data_grads(backend, rng):
    layer = dense(backend, kernel_regularizer=L1L2(0.05, 0.2), bias_regularizer=L2(0.5))
    plain = dense(backend)
    for k in ("kernel", "bias"):
        plain.params[k][...] = layer.params[k]
    x, dy = (
        backend.asarray(rng.standard_normal((6, 3))),
        backend.asarray(rng.standard_normal((6, 4))),
    )
    for _ in range(2):  # written afresh each call, never accumulated
        layer.forward(x, training=True)
        plain.forward(x, training=True)
        np.testing.assert_array_equal(  # the penalty does not change dx
            backend.to_numpy(layer.backward(dy)), backend.to_numpy(plain.backward(dy))
        )
        for k, (l1, l2) in (("kernel", (0.05, 0.2)), ("bias", (0.0, 0.5))):
            w = backend.to_numpy(layer.params[k])
            want = backend.to_numpy(plain.grads[k]) + ref_grad(w, l1, l2)
            assert_close(backend.to_numpy(layer.grads[k]), want, np.float64)


@pytest.mark.parametrize("reg", [L1(0.3), L2(0.7), L1L2(0.2, 0.4)], ids=repr)
def test_penalty_gradient_matches_finite_differences(reg, rng):
    """With ``dy = 0`` the grads are the penalty's: central differences of
    ``penalty()`` with respect to every weight (float64, eps 1e-6)."""
    layer = dense(get_backend("cpu"), kernel_regularizer=reg, bias_regularizer=reg)
    layer.forward(rng.standard_normal((5, 3)), training=True)
    layer.backward(np.zeros((5, 4)))
    eps = 1e-6
    for key, w in layer.params.items():
        numeric = np.empty(w.size)
        for i in range(w.size):
            orig = w.flat[i]
            w.flat[i] = orig + eps
            plus = float(layer.penalty())
            w.flat[i] = orig - eps
            numeric[i] = (plus - float(layer.penalty())) / (2 * eps)
            w.flat[i] = orig
        np.testing.assert_allclose(
            layer.grads[key].ravel(), numeric, rtol=1e-6, atol=1e-8
        )


def test_model_gradient_includes_the_penalties(rng):
    """End to end: the model adds ``penalty()`` to its loss; random-direction
    finite differences of that loss match the gradients Dense.backward wrote."""
    model = gpunn.Sequential(
        [
            layers.Dense(5, activation="gelu", kernel_regularizer=L1L2(0.1, 0.2)),
            layers.PReLU(per_unit=True),
            layers.Dense(3, kernel_regularizer="l2", bias_regularizer=L2(0.3)),
        ],
        input_dim=4,
        dtype="float64",
        backend="cpu",
        seed=0,
    )
    model.compile("mse", "sgd")
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    assert gpunn.gradcheck(model, x, y)


def test_no_bias_ignores_the_bias_regularizer(backend):
    layer = dense(backend, use_bias=False, bias_regularizer="l2")
    assert layer.penalty() is None


def test_get_and_configs():
    assert regularizers.get(None) is None
    reg = L2(0.5)
    assert regularizers.get(reg) is reg
    assert repr(regularizers.get("l1")) == "L1(l1=0.01)"
    assert regularizers.get("l2").get_config() == {"l2": 0.01}
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.0, "l2": 0.0}
    assert regularizers.names() == ["l1", "l1_l2", "l2"]
    for reg in (L1(0.2), L2(1e-4), L1L2(0.1, 0.3)):
        config = regularizers.serialize(reg)
        assert json.loads(json.dumps(config)) == config
        back = regularizers.get(config)
        assert type(back) is type(reg) and back.get_config() == reg.get_config()


def test_dense_config_round_trips_with_regularizers():
    layer = layers.Dense(3, kernel_regularizer=L1L2(0.1, 0.2), bias_regularizer="l2")
    config = layer.get_config()
    assert config["kernel_regularizer"] == {"name": "l1_l2", "l1": 0.1, "l2": 0.2}
    assert config["bias_regularizer"] == {"name": "l2", "l2": 0.01}
    assert layers.Dense(**config).get_config() == config
    assert layers.Dense(3).get_config()["kernel_regularizer"] is None


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: L1(-0.1), r"l1 must be in \[0, inf\), got -0.1"),
        (lambda: L2(float("nan")), "l2 must be"),
        (lambda: L1L2(l1=0.1, l2=float("inf")), "l2 must be"),
        (lambda: regularizers.get("l3"), "regularizer must be one of"),
        (
            lambda: layers.Dense(2, kernel_regularizer="L2"),
            "kernel_regularizer must be",
        ),
        (lambda: layers.Dense(2, bias_regularizer={"name": "l2", "l2": -1}), "l2 must"),
        (lambda: layers.Dense(2, bias_regularizer=0.1), "bias_regularizer must be"),
    ],
)
def test_bad_strengths_and_names(make, match):
    with pytest.raises(ValueError, match=match):
        make()
