"""BatchNorm against an independent float64 reference and torch golden values: forward
and backward in training mode, running statistics, eval mode, state, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close

import gpunn
from gpunn.layers import BatchNorm, Dense

GOLDEN = json.loads(
    (Path(__file__).parent / "data" / "batchnorm_golden.json").read_text()
)


def built(layer, backend, dtype, n_in, gamma=None, beta=None):
    """``layer`` alone in a model, with ``gamma`` and ``beta`` set when given."""
    model = gpunn.Sequential([layer], input_dim=n_in, dtype=dtype, backend=backend)
    if gamma is not None:
        model.set_weights([gamma, beta])
    layer.needs_dx = True
    return layer


def host(backend, x):
    return np.asarray(backend.to_numpy(x), dtype=np.float64)


def reference(x, dy, gamma, beta, eps):
    """Batch norm in float64, feature by feature: y, and dx from the explicit Jacobian
    ``dx_hat_i/dx_j = (delta_ij - 1/n - x_hat_i x_hat_j / n) / sigma``."""
    n, features = x.shape
    y, dx = np.empty_like(x), np.empty_like(x)
    for f in range(features):
        mean = sum(x[:, f]) / n
        sigma = np.sqrt(sum((x[:, f] - mean) ** 2) / n + eps)
        x_hat = (x[:, f] - mean) / sigma
        y[:, f] = gamma[f] * x_hat + beta[f]
        jac = (np.eye(n) - 1 / n - np.outer(x_hat, x_hat) / n) / sigma
        dx[:, f] = gamma[f] * jac.T @ dy[:, f]
    x_hat = (y - beta) / gamma
    return y, dx, (dy * x_hat).sum(axis=0), dy.sum(axis=0)


def test_training_forward_and_backward_match_the_reference(backend, dtype, rng):
    x = (rng.standard_normal((16, 5)) * 3 + 2).astype(dtype).astype(np.float64)
    dy = rng.standard_normal((16, 5)).astype(dtype).astype(np.float64)
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    layer = built(BatchNorm(eps=1e-3), backend, dtype, 5, gamma, beta)
    gamma = gamma.astype(dtype).astype(np.float64)
    beta = beta.astype(dtype).astype(np.float64)
    y = layer.forward(backend.asarray(x.astype(dtype)), training=True)
    dx = layer.backward(backend.asarray(dy.astype(dtype)))
    assert y.dtype == dx.dtype == dtype
    expected = reference(x, dy, gamma, beta, 1e-3)
    got = (y, dx, layer.grads["gamma"], layer.grads["beta"])
    for actual, want in zip(got, expected):
        assert_close(host(backend, actual), want, dtype, REDUCTION_TOL)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: str(c["case"]))
def test_matches_torch_golden_values(backend, dtype, case):
    layer = BatchNorm(**case["case"])
    weights = (case["gamma"], case["beta"]) if layer.affine else (None, None)
    built(layer, backend, dtype, 4, *weights)
    for step in case["steps"]:
        x, dy = (backend.asarray(np.array(step[k], dtype)) for k in ("x", "dy"))
        assert_close(host(backend, layer.forward(x, True)), step["y"], dtype)
        assert_close(host(backend, layer.backward(dy)), step["dx"], dtype)
        for name in ("gamma", "beta") if layer.affine else ():
            assert_close(host(backend, layer.grads[name]), step["d" + name], dtype)
        state = layer.get_state()
        for name in ("running_mean", "running_var"):
            assert state[name].dtype == dtype
            assert_close(state[name], step[name], dtype)
    y_eval = layer.forward(backend.asarray(np.array(case["x_eval"], dtype)))
    assert_close(host(backend, y_eval), case["y_eval"], dtype)
    assert layer.get_state()["num_batches_tracked"] == len(case["steps"])


@pytest.mark.parametrize("affine", [True, False])
def test_gradients_match_finite_differences_in_training_mode(affine, rng):
    layer = BatchNorm(eps=1e-2, affine=affine)
    assert gpunn.gradcheck(layer, rng.standard_normal((7, 3)) * 2 + 1)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_statistics_over_several_batches(backend, dtype, rng, momentum):
    layer = built(BatchNorm(momentum=momentum), backend, dtype, 3)
    mean, var = np.zeros(3), np.ones(3)
    for k in range(1, 5):
        x = rng.standard_normal((10, 3)) * k + k
        layer.forward(backend.asarray(x.astype(dtype)), training=True)
        x = x.astype(dtype).astype(np.float64)
        m = 1 / k if momentum is None else momentum
        mean = (1 - m) * mean + m * x.mean(axis=0)
        var = (1 - m) * var + m * x.var(axis=0, ddof=1)  # unbiased
    state = layer.get_state()
    assert state["num_batches_tracked"] == 4
    assert_close(state["running_mean"], mean, dtype, REDUCTION_TOL)
    assert_close(state["running_var"], var, dtype, REDUCTION_TOL)


def test_eval_uses_the_running_statistics_and_changes_nothing(backend, dtype, rng):
    gamma, beta = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    layer = built(BatchNorm(momentum=0.5), backend, dtype, 4, gamma, beta)
    for _ in range(3):
        layer.forward(backend.asarray(rng.standard_normal((8, 4)).astype(dtype)), True)
    state = layer.get_state()
    x = rng.standard_normal((1, 4)).astype(dtype)  # batch 1 is fine in eval
    y = host(backend, layer.forward(backend.asarray(x)))
    scale = gamma / np.sqrt(state["running_var"].astype(np.float64) + 1e-5)
    assert_close(y, (x - state["running_mean"]) * scale + beta, dtype, REDUCTION_TOL)
    after = layer.get_state()
    for name in state:
        np.testing.assert_array_equal(after[name], state[name])


def test_training_with_batch_size_one_raises_and_changes_nothing(backend):
    layer = built(BatchNorm(), backend, "float64", 3)
    before = layer.get_state()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        layer.forward(backend.asarray(np.ones((1, 3))), training=True)
    after = layer.get_state()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_weights_are_gamma_then_beta_inside_a_sequential():
    model = gpunn.Sequential(
        [Dense(4), BatchNorm(), Dense(2), BatchNorm(affine=False)],
        input_dim=3,
        backend="cpu",
    )
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 4), (4,), (4,), (4,), (4, 2), (2,)]
    _, _, gamma, beta, _, _ = model.get_weights()
    np.testing.assert_array_equal(gamma, np.ones(4))
    np.testing.assert_array_equal(beta, np.zeros(4))
    assert model.count_params() == 16 + 8 + 10


def test_whole_model_gradient_and_training(rng):
    model = gpunn.Sequential(
        [Dense(6, activation="tanh"), BatchNorm(), Dense(3)],
        input_dim=4,
        dtype="float64",
        backend="cpu",
        seed=2,
    )
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(0.05))
    X, y = rng.standard_normal((32, 4)), rng.integers(0, 3, 32)
    assert gpunn.gradcheck(model, X, y)
    first = model.evaluate(X, y)["loss"]
    model.fit(X, y, epochs=20, batch_size=8, verbose=0)
    assert model.evaluate(X, y)["loss"] < first


def test_state_round_trip_and_validation(backend):
    layer = built(BatchNorm(), backend, "float32", 3)
    layer.forward(backend.asarray(np.arange(12, dtype=np.float32).reshape(4, 3)), True)
    state = layer.get_state()
    other = built(BatchNorm(), backend, "float32", 3)
    device_mean = other._running["mean"]
    other.set_state(state)
    assert other._running["mean"] is device_mean  # updated in place
    for name, value in other.get_state().items():
        np.testing.assert_array_equal(value, state[name])
    bad = [
        ({**state, "extra": np.zeros(3)}, "needs the entries"),
        ({k: v for k, v in state.items() if k != "running_var"}, "needs the entries"),
        ({**state, "running_mean": np.zeros(4)}, r"must have shape \(3,\)"),
        ({**state, "running_var": np.array([1.0, np.nan, 1.0])}, "NaN"),
        ({**state, "running_var": -np.ones(3)}, ">= 0"),
        ({**state, "num_batches_tracked": np.array(1.5)}, "int >= 0"),
    ]
    for wrong, match in bad:
        with pytest.raises(ValueError, match=match):
            other.set_state(wrong)
        np.testing.assert_array_equal(
            other.get_state()["running_var"], state["running_var"]
        )


def test_state_given_before_build_is_used(backend):
    layer = BatchNorm(affine=False)
    state = {
        "running_mean": np.array([3.0, 3.0]),
        "running_var": np.array([4.0, 4.0]),
        "num_batches_tracked": np.array(7),
    }
    layer.set_state(state)
    built(layer, backend, "float64", 2)
    y = host(backend, layer.forward(backend.asarray(np.array([[5.0, 1.0]]))))
    assert_close(y, np.array([[2.0, -2.0]]) / np.sqrt(4 + 1e-5), "float64")
    assert layer.get_state()["num_batches_tracked"] == 7
    layer = BatchNorm()
    layer.set_state({**state, "running_mean": np.zeros(3), "running_var": np.ones(3)})
    with pytest.raises(ValueError, match="state has 3 features, but the layer input"):
        built(layer, backend, "float64", 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"momentum": 1.5}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"eps": 0.0}, "eps"),
        ({"eps": float("nan")}, "eps"),
    ],
)
def test_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchNorm(**kwargs)


def test_config_round_trip():
    layer = BatchNorm(momentum=None, eps=1e-3, affine=False, name="bn")
    assert BatchNorm(**layer.get_config()).get_config() == layer.get_config()
