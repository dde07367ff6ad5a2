"""Activation layers against PyTorch in float64 on fresh inputs, a small model trained
with them, and the committed golden values still being torch's (skipped without
torch)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from test_activations import standalone

import gpunn
from gpunn import layers
from gpunn.backends import get_backend

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

DATA = Path(__file__).parent / "data"
TOL = {"rtol": 1e-10, "atol": 1e-12}

# (gpunn layer, torch module or function of x); PReLU slopes are copied across
CASES = [
    (lambda: layers.LeakyReLU(), lambda: torch.nn.LeakyReLU()),
    (lambda: layers.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
    (lambda: layers.ELU(), lambda: torch.nn.ELU()),
    (lambda: layers.ELU(alpha=0.5), lambda: torch.nn.ELU(alpha=0.5)),
    (lambda: layers.SiLU(), lambda: torch.nn.SiLU()),
    (lambda: layers.Activation("swish"), lambda: torch.nn.SiLU()),
    (lambda: layers.GELU(), lambda: torch.nn.GELU()),
    (lambda: layers.GELU("tanh"), lambda: torch.nn.GELU(approximate="tanh")),
    (lambda: layers.Softmax(), lambda: torch.nn.Softmax(dim=1)),
    (lambda: layers.Softmax(0.5), lambda: lambda x: torch.softmax(x / 0.5, dim=1)),
    (lambda: layers.Softmax(4.0), lambda: lambda x: torch.softmax(x / 4.0, dim=1)),
    (lambda: layers.PReLU(), lambda: torch.nn.PReLU(dtype=torch.float64)),
    (
        lambda: layers.PReLU(-0.3, per_unit=True),
        lambda: torch.nn.PReLU(9, init=-0.3, dtype=torch.float64),
    ),
]


def inputs(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((12, 9)) * 4
    x[0, :6] = [0.0, -0.0, 1e-300, -1e-300, 40.0, -40.0]  # kinks and tails
    return x, rng.standard_normal((12, 9))


@pytest.mark.parametrize("case", CASES, ids=lambda c: repr(c[0]()))
@pytest.mark.parametrize("seed", [0, 1])
def test_layer_matches_torch(case, seed):
    make, make_torch = case
    x, dy = inputs(seed)
    layer = standalone(make(), get_backend("cpu"), np.float64, x.shape[1])
    fn = make_torch()
    if "weight" in layer.params:  # distinct slopes, set on both sides
        w = np.random.default_rng(seed).uniform(-1, 1, layer.params["weight"].shape)
        layer.params["weight"][...] = w
        with torch.no_grad():
            fn.weight.copy_(torch.from_numpy(w))
    xt = torch.tensor(x, requires_grad=True)
    yt = fn(xt)
    yt.backward(torch.from_numpy(dy))
    y = layer.forward(x.copy(), training=True)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), **TOL)
    if "weight" in layer.params:  # the slope gradient
        np.testing.assert_allclose(layer.grads["weight"], fn.weight.grad.numpy(), **TOL)


def test_trainable_swish_matches_torch_autograd():
    x, dy = inputs(2)
    layer = standalone(
        layers.Swish(0.8, trainable=True), get_backend("cpu"), np.float64, 9
    )
    beta = torch.tensor([0.8], dtype=torch.float64, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    (xt * torch.sigmoid(beta * xt)).backward(torch.from_numpy(dy))
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(layer.grads["beta"], beta.grad.numpy(), **TOL)


def test_model_with_new_activations_trains_like_torch():
    """Five SGD steps on softmax cross-entropy; weights equal after each."""
    model = gpunn.Sequential(
        [
            layers.Dense(8, activation=layers.LeakyReLU(0.1)),
            layers.PReLU(per_unit=True),
            layers.Dense(7, activation="gelu"),
            layers.Dense(6, activation={"activation": "elu", "alpha": 0.7}),
            layers.Dense(5, activation="silu"),
            layers.Dense(3),
        ],
        input_dim=4,
        dtype="float64",
        backend="cpu",
        seed=0,
    )
    model.compile("softmax_cross_entropy", gpunn.optim.SGD(0.5))
    weights = [torch.tensor(w, requires_grad=True) for w in model.get_weights()]
    k1, b1, slope, k2, b2, k3, b3, k4, b4, k5, b5 = weights
    prelu = torch.nn.functional.prelu

    def net(x):
        h = prelu(torch.nn.functional.leaky_relu(x @ k1 + b1, 0.1), slope)
        h = torch.nn.functional.elu(
            torch.nn.functional.gelu(h @ k2 + b2) @ k3 + b3, 0.7
        )
        return torch.nn.functional.silu(h @ k4 + b4) @ k5 + b5

    optimizer = torch.optim.SGD(weights, lr=0.5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
        loss = model.train_step(x, y)
        optimizer.zero_grad()
        torch_loss = torch.nn.functional.cross_entropy(
            net(torch.from_numpy(x)), torch.from_numpy(y)
        )
        torch_loss.backward()
        optimizer.step()
        assert loss == pytest.approx(torch_loss.item(), rel=1e-10)
        for ours, theirs in zip(model.get_weights(), weights):
            np.testing.assert_allclose(
                ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12
            )


def test_golden_values_are_current():
    """tests/data/activations_golden.json is what its script computes with this
    torch."""
    spec = importlib.util.spec_from_file_location(
        "make_golden", DATA / "make_activations_golden.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    golden = json.loads((DATA / "activations_golden.json").read_text())
    fresh = script.compute()
    assert [c["layer"] for c in fresh["cases"]] == [c["layer"] for c in golden["cases"]]
    for new, old in zip(fresh["cases"], golden["cases"]):
        assert new["kwargs"] == old["kwargs"]
        for key in ("y", "dx", "dparam"):
            if old[key] is not None:
                np.testing.assert_allclose(new[key], old[key], **TOL)
