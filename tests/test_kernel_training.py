"""Whole models trained on the kernel backends match the NumPy reference.

Each optimizer trains the same model (Dense layers with activations, BatchNorm, a
PReLU, clipping) for ten steps on the reference and on a kernel backend (the CPU
emulator in CI, the GPU where there is one); losses and weights must agree within
the README's multi-step tolerance. Bad input raises the same exception class on both.
"""

import numpy as np
import pytest

import gpunn
from gpunn.layers import BatchNorm, Dense, PReLU

STEPS = 10
TOL = {"float64": (1e-6, 1e-6), "float32": (1e-3, 1e-4)}  # (rtol, atol)
OPTIMIZERS = {
    "sgd": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    "adam": {"lr": 1e-2},
    "adamw": {"lr": 1e-2, "amsgrad": True},
    "adamax": {"lr": 1e-2},
    "nadam": {"lr": 1e-2},
    "rmsprop": {"lr": 1e-3, "centered": True, "momentum": 0.5},
    "adagrad": {"lr": 1e-2},
    "adadelta": {"lr": 1.0},
    "lars": {"lr": 0.1, "momentum": 0.9},
    "lamb": {"lr": 1e-2},
}


def _model(backend, dtype, optimizer):
    model = gpunn.Sequential(
        [
            Dense(48, activation="relu"),
            Dense(32, use_bias=False),  # BatchNorm makes a bias gradient pure noise
            BatchNorm(),
            PReLU(),
            Dense(24, activation="gelu"),
            Dense(5),
        ],
        input_dim=12,
        dtype=dtype,
        backend=backend,
        seed=3,
    )
    model.compile(
        "softmax_cross_entropy",
        gpunn.optim.get(optimizer, clip_norm=5.0, **OPTIMIZERS[optimizer]),
        metrics=[],
    )
    return model


def _train(backend, dtype, optimizer):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((STEPS, 33, 12)).astype(dtype)
    y = rng.integers(0, 5, (STEPS, 33))
    model = _model(backend, dtype, optimizer)
    losses = [model.train_step(x, t) for x, t in zip(X, y)]
    return np.array(losses), model.get_weights()


def test_every_optimizer_is_covered():
    assert sorted(OPTIMIZERS) == gpunn.optim.names()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_training_matches_the_reference(kernel_backend, reference, optimizer, dtype):
    rtol, atol = TOL[dtype]
    ref_losses, ref_weights = _train(reference, dtype, optimizer)
    losses, weights = _train(kernel_backend, dtype, optimizer)
    np.testing.assert_allclose(losses, ref_losses, rtol=rtol, atol=atol)
    for ours, theirs in zip(weights, ref_weights):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def test_fit_and_evaluate_match_the_reference(kernel_backend, reference):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((150, 12)).astype(np.float32)
    y = rng.integers(0, 5, 150)
    results = []
    for backend in (reference, kernel_backend):
        model = _model(backend, "float32", "adam")
        history = model.fit(X, y, epochs=2, batch_size=40, verbose=0)
        results.append((history.history["loss"], model.evaluate(X, y)["loss"]))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "x, y, error",
    [
        (np.zeros((4, 12)), np.array([0, 1, 2, 7]), gpunn.errors.LabelError),
        (np.zeros((4, 11)), np.array([0, 1, 2, 3]), ValueError),
        (np.full((4, 12), np.nan), np.array([0, 1, 2, 3]), ValueError),
        (np.zeros((4, 12)), np.array([0.5, 1, 2, 3]), gpunn.errors.LabelError),
    ],
    ids=["label-out-of-range", "wrong-width", "nan-features", "fractional-label"],
)
def test_bad_input_raises_the_same_class(kernel_backend, reference, x, y, error):
    raised = []
    for backend in (reference, kernel_backend):
        model = _model(backend, "float32", "adam")
        before = model.get_weights()
        with pytest.raises(error) as info:
            model.train_step(x, y)
        raised.append(type(info.value))
        for a, b in zip(model.get_weights(), before):
            np.testing.assert_array_equal(a, b)
    assert raised[0] is raised[1]
