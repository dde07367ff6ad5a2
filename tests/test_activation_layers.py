"""Activation layers: what they keep for backward, names in Dense, Dense's
``activate`` switch, configs that round-trip, and bad arguments."""

import json

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close
from test_activations import standalone

from gpunn import layers
from gpunn.backends import get_backend


@pytest.mark.parametrize(
    "name, keeps",
    [("relu", "y"), ("elu", "y"), ("silu", "x"), ("gelu", "x"), ("linear", "")],
)
def test_activation_keeps_only_what_its_backward_needs(name, keeps, rng):
    layer = standalone(layers.Activation(name), get_backend("cpu"), np.float64, 4)
    x = rng.standard_normal((3, 4))
    layer.forward(x)
    assert layer._x is None and layer._y is None  # inference keeps nothing
    y = layer.forward(x, training=True)
    assert (layer._x is x) == (keeps == "x") and (layer._y is y) == (keeps == "y")


@pytest.mark.parametrize("name", ["leaky_relu", "elu", "silu", "swish", "gelu"])
def test_new_names_work_in_dense(backend, name, rng):
    dense = standalone(layers.Dense(4, activation=name), backend, np.float64, 3)
    act = standalone(layers.Activation(name), backend, np.float64, 4)
    x = backend.asarray(rng.standard_normal((5, 3)))
    pre = dense.forward(x, activate=False)
    np.testing.assert_array_equal(
        backend.to_numpy(dense.forward(x)), backend.to_numpy(act.forward(pre))
    )
    assert name in layers.activation_names()


def test_swish_name_is_silu(backend, rng):
    x = backend.asarray(rng.standard_normal((4, 5)))
    swish = standalone(layers.Activation("swish"), backend, np.float64, 5)
    np.testing.assert_array_equal(
        backend.to_numpy(swish.forward(x)), backend.to_numpy(backend.silu(x))
    )


def test_dense_activate_false_skips_the_activation_both_ways(backend, dtype, rng):
    dense = standalone(layers.Dense(3, activation="softmax"), backend, dtype, 4)
    x, dy = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    w, b = (
        backend.to_numpy(dense.params[k]).astype(np.float64) for k in ("kernel", "bias")
    )
    y = dense.forward(backend.asarray(x.astype(dtype)), training=True, activate=False)
    x64 = x.astype(dtype).astype(np.float64)
    assert_close(backend.to_numpy(y), x64 @ w + b, dtype, REDUCTION_TOL)
    dx = dense.backward(backend.asarray(dy.astype(dtype)), activate=False)
    dy64 = dy.astype(dtype).astype(np.float64)
    assert_close(backend.to_numpy(dx), dy64 @ w.T, dtype, REDUCTION_TOL)
    assert_close(
        backend.to_numpy(dense.grads["kernel"]), x64.T @ dy64, dtype, REDUCTION_TOL
    )


@pytest.mark.parametrize(
    "layer",
    [
        layers.LeakyReLU(0.2),
        layers.ELU(alpha=0.5, name="e"),
        layers.SiLU(),
        layers.GELU("tanh"),
        layers.Softmax(temperature=2.0),
        layers.Activation("leaky_relu", negative_slope=0.3),
        layers.Dense(3, activation=layers.LeakyReLU(0.2)),
        layers.Dense(3, activation={"activation": "gelu", "approximate": "tanh"}),
        layers.Dense(3, activation="elu"),
    ],
    ids=repr,
)
def test_config_round_trips(layer):
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    assert type(layer)(**config).get_config() == config


def test_dense_activation_config():
    leaky = layers.LeakyReLU(0.2)
    dense = layers.Dense(3, activation=leaky)
    assert dense.activation is not leaky  # copied, never shared
    assert dense.get_config()["activation"] == {
        "activation": "leaky_relu",
        "negative_slope": 0.2,
    }
    assert layers.Dense(3, activation="gelu").get_config()["activation"] == "gelu"
    assert layers.Dense(3, activation=layers.ELU()).get_config()["activation"] == "elu"


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: layers.LeakyReLU(-0.1),
            r"negative_slope must be in \[0, inf\), got -0.1",
        ),
        (lambda: layers.LeakyReLU(float("nan")), "negative_slope must be"),
        (lambda: layers.ELU(0.0), r"alpha must be in \(0, inf\), got 0.0"),
        (lambda: layers.ELU(alpha=-1), "alpha must be"),
        (lambda: layers.Softmax(0), "temperature must be"),
        (lambda: layers.Softmax(temperature=-2.0), "temperature must be"),
        (lambda: layers.Softmax(float("inf")), "temperature must be"),
        (
            lambda: layers.GELU("exact"),
            "approximate must be 'none' or 'tanh', got 'exact'",
        ),
        (lambda: layers.Activation("gelu", approximate=None), "approximate must be"),
        (
            lambda: layers.Dense(3, activation={"activation": "elu", "alpha": -1}),
            "alpha",
        ),
        (lambda: layers.Dense(3, activation="Gelu"), "activation must be one of"),
        (
            lambda: layers.Dense(3, activation={"alpha": 1.0}),
            "activation must be one of",
        ),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_unknown_option_or_type_raises_type_error():
    with pytest.raises(
        TypeError, match=r"'relu' takes the options \[\], got \['alpha'\]"
    ):
        layers.Activation("relu", alpha=1.0)
    with pytest.raises(TypeError, match="activation must be a name"):
        layers.Dense(3, activation=3.5)
    with pytest.raises(TypeError, match="activation must be a name"):
        layers.Dense(3, activation=layers.PReLU())


def test_options_read_as_attributes():
    """As on PyTorch modules; the model reads a final Softmax's temperature this way."""
    assert layers.Softmax(2.0).temperature == 2.0
    assert layers.LeakyReLU(0.2).negative_slope == 0.2
    assert layers.ELU().alpha == 1.0
    assert layers.GELU("tanh").approximate == "tanh"
    assert layers.Dense(3, activation="softmax").activation.temperature == 1.0
    assert not hasattr(layers.ReLU(), "alpha")
