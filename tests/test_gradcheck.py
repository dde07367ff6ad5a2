"""Finite-difference gradient checks (float64) for every layer, loss and a whole model,
plus negative controls showing the check catches a wrong gradient."""

import numpy as np
import pytest

import gpunn
from gpunn import layers
from gpunn.gradcheck import GradcheckError


def away_from_kinks(rng, shape, margin=0.05):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * margin * 2, x)


LAYERS = [
    lambda: layers.Dense(
        4,
        kernel_regularizer=gpunn.regularizers.L1L2(0.3, 0.2),
        bias_regularizer="l2",
        bias_init="uniform",
    ),
    lambda: layers.Dense(4),
    lambda: layers.Dense(3, use_bias=False),
    lambda: layers.Dense(5, activation="tanh"),
    lambda: layers.Dense(5, activation="sigmoid", kernel_init="orthogonal"),
    lambda: layers.ReLU(),
    lambda: layers.Sigmoid(),
    lambda: layers.Tanh(),
    lambda: layers.Identity(),
    lambda: layers.Softmax(),
    lambda: layers.Activation("linear"),
    lambda: layers.LeakyReLU(0.2),
    lambda: layers.ELU(alpha=0.7),
    lambda: layers.SiLU(),
    lambda: layers.Activation("swish"),
    lambda: layers.GELU(),
    lambda: layers.GELU("tanh"),
    lambda: layers.Softmax(temperature=0.5),
    lambda: layers.Dense(5, activation="gelu"),
    lambda: layers.Dense(4, activation={"activation": "elu", "alpha": 0.5}),
    lambda: layers.PReLU(),
    lambda: layers.PReLU(init=-0.4, per_unit=True),
    lambda: layers.Swish(beta=0.6),
    lambda: layers.Swish(beta=1.5, trainable=True),
]


@pytest.mark.parametrize("make", LAYERS, ids=lambda m: repr(m()))
def test_layer_gradients(make, rng):
    assert gpunn.gradcheck(make(), away_from_kinks(rng, (6, 7)))


def test_dense_relu_away_from_kinks():
    """Inside a model (float64, CPU): rows are drawn until every pre-activation is at
    least 0.05 from the kink, so central differences never cross it."""
    model = gpunn.Sequential(
        [layers.Dense(5, activation="relu", bias_init="uniform")],
        input_dim=7,
        dtype="float64",
        backend="cpu",
        seed=0,
    )
    layer = model.layers[0]
    w, b = model.get_weights()
    rng = np.random.default_rng(0)
    rows = []
    while len(rows) < 6:
        x = rng.standard_normal(7)
        if np.abs(x @ w + b).min() > 0.05:
            rows.append(x)
    assert gpunn.gradcheck(layer, np.array(rows))
    assert layer.needs_dx is False  # restored: the first layer skips its dx GEMM


@pytest.mark.parametrize(
    "loss, targets",
    [
        ("softmax_cross_entropy", lambda rng: rng.integers(0, 5, 8)),
        ("binary_cross_entropy", lambda rng: rng.integers(0, 2, (8, 5)).astype(float)),
        ("mse", lambda rng: rng.standard_normal((8, 5))),
    ],
)
def test_loss_gradients(loss, targets, rng):
    assert gpunn.gradcheck(loss, rng.standard_normal((8, 5)) * 3, targets(rng))


@pytest.mark.parametrize(
    "loss, y",
    [
        ("softmax_cross_entropy", lambda rng: rng.integers(0, 3, 10)),
        ("binary_cross_entropy", lambda rng: rng.integers(0, 2, (10, 3))),
        ("mse", lambda rng: rng.standard_normal((10, 3))),
    ],
)
def test_whole_model_gradient_along_random_directions(loss, y, rng):
    model = gpunn.Sequential(
        [
            layers.Dense(8, activation="tanh"),
            layers.Dense(6, activation="sigmoid"),
            layers.Dense(3),
        ],
        input_dim=4,
        dtype="float64",
        backend="cpu",
        seed=3,
    )
    model.compile(loss, "sgd")
    assert gpunn.gradcheck(model, rng.standard_normal((10, 4)), y(rng))


class _WrongDense(layers.Dense):
    """Its bias gradient is off by 10%: gradcheck must catch it."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["bias"] *= 1.1
        return dx


class _WrongSigmoid(layers.Sigmoid):
    def backward(self, dy):
        return dy * self._y  # missing the (1 - y) factor


@pytest.mark.parametrize(
    "layer", [_WrongDense(3), _WrongSigmoid()], ids=["bias", "act"]
)
def test_gradcheck_catches_a_wrong_layer_gradient(layer, rng):
    with pytest.raises(GradcheckError, match="gradient of"):
        gpunn.gradcheck(layer, rng.standard_normal((4, 5)))


def test_gradcheck_catches_a_wrong_model_gradient(rng):
    model = gpunn.Sequential(
        [_WrongDense(3)], input_dim=2, dtype="float64", backend="cpu", seed=0
    )
    model.compile("mse", "sgd")
    with pytest.raises(GradcheckError, match="random directions"):
        gpunn.gradcheck(model, rng.standard_normal((5, 2)), rng.standard_normal((5, 3)))


def test_gradcheck_refuses_float32(rng):
    with pytest.raises(ValueError, match="float64"):
        gpunn.gradcheck(layers.Dense(2), rng.standard_normal((3, 2)).astype(np.float32))


def test_gradcheck_leaves_the_model_unchanged(rng):
    model = gpunn.Sequential(
        [layers.Dense(3, activation="tanh"), layers.Dense(2)],
        input_dim=3,
        dtype="float64",
        backend="cpu",
        seed=1,
    )
    model.compile("mse", "sgd")
    before = model.get_weights()
    gpunn.gradcheck(model, rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_gradcheck_refuses_a_float32_layer(rng):
    layer = gpunn.Sequential([layers.Dense(3)], input_dim=5, backend="cpu").layers[0]
    with pytest.raises(ValueError, match="layer built in float64"):
        gpunn.gradcheck(layer, rng.standard_normal((4, 5)))


def test_gradcheck_prepares_targets_like_fit(rng):
    """A 1-D target vector for a one-column output, as fit accepts it."""
    z, t = rng.standard_normal((5, 1)), rng.integers(0, 2, 5)
    assert gpunn.gradcheck("binary_cross_entropy", z, t)


def _float64_model(backend):
    model = gpunn.Sequential(
        [layers.Dense(8, activation="tanh"), layers.BatchNorm(), layers.Dense(3)],
        input_dim=4,
        dtype="float64",
        backend=backend,
        seed=3,
    )
    model.compile("softmax_cross_entropy", "sgd")
    return model


def test_models_and_layers_are_checked_on_their_own_backend(backend, rng):
    """A float64 model or layer is checked where it was built (the GPU half reads
    the gradients back from the device)."""
    x, y = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    model = _float64_model(backend)
    assert gpunn.gradcheck(model, x, y)
    assert gpunn.gradcheck(model.layers[0], x)


def test_a_kernel_backend_model_is_checked_with_its_kernels(kernel_backend, rng):
    """The kernel ops (fused Dense + activation, batch norm) pass the whole-model
    check: in CI on the emulator, and on a GPU."""
    x, y = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    assert gpunn.gradcheck(_float64_model(kernel_backend), x, y)
