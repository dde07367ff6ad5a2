"""PReLU and Swish: parameters in the arena, outputs and parameter gradients against
float64 references written here, on every backend and dtype, inside a model, bad
arguments. (Finite differences: tests/test_gradcheck.py; torch: the golden values in
tests/test_activations.py and tests/test_activations_torch.py.)"""

import cmath
import math

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close
from test_activations import complex_step, csig, standalone

import gpunn
from gpunn import layers


def ref_prelu(x, dy, w):
    """Loops over elements; ``w`` broadcasts over the units."""
    w = np.broadcast_to(w, x.shape[1:])
    y, dx, dw = np.empty_like(x), np.empty_like(x), [[] for _ in w]
    for (i, j), v in np.ndenumerate(x):
        y[i, j] = v if v > 0 else w[j] * v
        dx[i, j] = dy[i, j] if v > 0 else w[j] * dy[i, j]
        dw[j].append(0.0 if v > 0 else v * dy[i, j])
    return y, dx, np.array([math.fsum(terms) for terms in dw])


@pytest.mark.parametrize("per_unit", [False, True])
def test_prelu_matches_reference(backend, dtype, rng, per_unit):
    x = (rng.standard_normal((9, 5)) * 3).astype(dtype)
    x[0, :2] = 0.0  # the kink: input grad uses the slope, the slope gets nothing
    dy = rng.standard_normal((9, 5)).astype(dtype)
    layer = standalone(layers.PReLU(init=0.3, per_unit=per_unit), backend, dtype, 5)
    assert layer.params["weight"].shape == ((5,) if per_unit else (1,))
    w = rng.uniform(-0.5, 1.5, layer.params["weight"].shape).astype(dtype)
    layer.params["weight"][...] = backend.asarray(w)
    y = layer.forward(backend.asarray(x), training=True)
    dx = layer.backward(backend.asarray(dy))
    ref_y, ref_dx, ref_dw = ref_prelu(*(a.astype(np.float64) for a in (x, dy, w)))
    if not per_unit:
        ref_dw = np.array([math.fsum(ref_dw)])
    assert y.dtype == dx.dtype == layer.grads["weight"].dtype == dtype
    assert_close(backend.to_numpy(y), ref_y, dtype)
    assert_close(backend.to_numpy(dx), ref_dx, dtype)
    assert_close(backend.to_numpy(layer.grads["weight"]), ref_dw, dtype, REDUCTION_TOL)


def test_prelu_first_layer_skips_dx_but_writes_the_slope_grad(backend, rng):
    layer = standalone(layers.PReLU(), backend, np.float64, 3)
    layer.needs_dx = False
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    layer.forward(backend.asarray(x), training=True)
    assert layer.backward(backend.asarray(dy)) is None
    want = math.fsum((dy * np.minimum(x, 0)).ravel())
    assert_close(backend.to_numpy(layer.grads["weight"]), [want], np.float64)


def swish(beta):
    return lambda z: z * csig(beta * z)


@pytest.mark.parametrize("beta, trainable", [(1.0, False), (0.4, False), (1.7, True)])
def test_swish_matches_reference(backend, dtype, rng, beta, trainable):
    x = (rng.standard_normal((8, 6)) * 3).astype(dtype)
    x[0] = [-1e4, -88, -30, 30, 88, 1e4]
    dy = rng.standard_normal((8, 6)).astype(dtype)
    layer = standalone(layers.Swish(beta, trainable=trainable), backend, dtype, 6)
    y = layer.forward(backend.asarray(x), training=True)
    dx = layer.backward(backend.asarray(dy))
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    ref_y = np.vectorize(lambda v: swish(beta)(v).real)(x64)
    ref_dx = dy64 * np.vectorize(complex_step(swish(beta)))(x64)
    assert y.dtype == dx.dtype == dtype
    assert_close(backend.to_numpy(y), ref_y, dtype)
    assert_close(backend.to_numpy(dx), ref_dx, dtype, REDUCTION_TOL)
    assert sorted(layer.grads) == (["beta"] if trainable else [])
    if trainable:  # d/dbeta by a complex step in beta, summed over all elements
        h = 1e-30
        terms = [
            d * (v * csig(complex(beta, h) * v)).imag / h
            for v, d in zip(x64.ravel(), dy64.ravel())
        ]
        dbeta = layer.grads["beta"]
        assert dbeta.dtype == dtype
        assert_close(backend.to_numpy(dbeta), [math.fsum(terms)], dtype, REDUCTION_TOL)


def test_swish_with_beta_one_is_silu(backend, rng):
    x = backend.asarray(rng.standard_normal((5, 4)))
    np.testing.assert_allclose(
        backend.to_numpy(backend.swish(x)), backend.to_numpy(backend.silu(x)), 1e-14
    )


def test_parameters_live_in_the_arena_and_train():
    model = gpunn.Sequential(
        [
            layers.Dense(4),
            layers.PReLU(per_unit=True),
            layers.Dense(3),
            layers.Swish(trainable=True),
            layers.PReLU(init=0.1),
            layers.Dense(2),
        ],
        input_dim=3,
        dtype="float64",
        backend="cpu",
        seed=0,
    )
    assert model.count_params() == (3 * 4 + 4) + 4 + (4 * 3 + 3) + 1 + 1 + (3 * 2 + 2)
    keys = [slot.key for slot in model.arena.slots]
    assert {"prelu_1.weight", "swish_3.beta", "prelu_4.weight"} <= set(keys)
    before = model.get_weights()
    model.compile("mse", gpunn.optim.SGD(0.1))
    rng = np.random.default_rng(0)
    model.train_step(rng.standard_normal((16, 3)), rng.standard_normal((16, 2)))
    for i in (2, 5, 6):  # the slopes and beta moved
        assert not np.array_equal(before[i], model.get_weights()[i])


def test_configs_round_trip():
    for layer in (layers.PReLU(-0.2, per_unit=True, name="p"), layers.Swish(1.5, True)):
        config = layer.get_config()
        assert type(layer)(**config).get_config() == config


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: layers.PReLU(init=float("inf")), "init must be"),
        (lambda: layers.PReLU(float("nan")), "init must be"),
        (lambda: layers.Swish(beta=float("nan")), "beta must be"),
        (lambda: layers.Swish(float("-inf"), trainable=True), "beta must be"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_complex_step_reference_is_sound():
    """The reference derivative itself, against a closed form at a few points."""
    for v in (-3.0, -0.5, 0.0, 2.0):
        s = 1 / (1 + math.exp(-v))
        assert complex_step(swish(1.0))(v) == pytest.approx(s * (1 + v * (1 - s)))
    assert cmath.isclose(csig(complex(-800, 0)), 0)
