"""Whole-model parity with PyTorch in float64: same initial weights, same batches, same
losses and weights after several steps of each optimizer (skipped without torch)."""

import numpy as np
import pytest

import gpunn
from gpunn.layers import Dense

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

OPTIMIZERS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("Adam", {"lr": 1e-2, "weight_decay": 1e-2}),
    ("AdamW", {"lr": 1e-2, "amsgrad": True}),
]
STEPS = 8


def torch_mlp(model, activations):
    modules = []
    for i, (w, b) in enumerate(
        zip(model.get_weights()[::2], model.get_weights()[1::2])
    ):
        linear = torch.nn.Linear(*w.shape, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        modules.append(linear)
        if i < len(activations):
            modules.append(activations[i]())
    return torch.nn.Sequential(*modules)


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
@pytest.mark.parametrize(
    "loss", ["softmax_cross_entropy", "binary_cross_entropy", "mse"]
)
def test_training_matches_pytorch(name, kwargs, loss):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((STEPS, 16, 7))
    if loss == "softmax_cross_entropy":
        Y = rng.integers(0, 4, (STEPS, 16))
        criterion = torch.nn.CrossEntropyLoss()
    elif loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (STEPS, 16, 4)).astype(np.float64)
        criterion = torch.nn.BCEWithLogitsLoss()
    else:
        Y = rng.standard_normal((STEPS, 16, 4))
        criterion = torch.nn.MSELoss()
    model = gpunn.Sequential(
        [
            Dense(12, activation="tanh"),
            Dense(9, activation="relu"),
            Dense(6, activation="sigmoid"),
            Dense(4),
        ],
        input_dim=7,
        dtype="float64",
        backend="cpu",
        seed=1,
    )
    model.compile(loss, getattr(gpunn.optim, name)(**kwargs))
    net = torch_mlp(model, [torch.nn.Tanh, torch.nn.ReLU, torch.nn.Sigmoid])
    opt = getattr(torch.optim, name)(net.parameters(), **kwargs)
    for x, y in zip(X, Y):
        ours = model.train_step(x, y)
        opt.zero_grad()
        ref = criterion(net(torch.from_numpy(x)), torch.from_numpy(y))
        ref.backward()
        opt.step()
        assert ours == pytest.approx(ref.item(), rel=1e-12)
    theirs = [p.detach().numpy() for p in net.parameters()]
    for ours, ref in zip(model.get_weights(), theirs):
        np.testing.assert_allclose(
            ours, ref.T if ref.ndim == 2 else ref, rtol=1e-9, atol=1e-12
        )


def test_float32_training_matches_pytorch_within_the_multistep_tolerance():
    rng = np.random.default_rng(1)
    model = gpunn.Sequential(
        [Dense(32, activation="relu"), Dense(5)],
        input_dim=10,
        dtype="float32",
        backend="cpu",
        seed=2,
    )
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-3))
    net = torch_mlp(model, [torch.nn.ReLU]).float()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(10):
        x = rng.standard_normal((64, 10)).astype(np.float32)
        y = rng.integers(0, 5, 64)
        ours = model.train_step(x, y)
        opt.zero_grad()
        ref = torch.nn.functional.cross_entropy(
            net(torch.from_numpy(x)), torch.from_numpy(y)
        )
        ref.backward()
        opt.step()
        assert ours == pytest.approx(ref.item(), rel=1e-4, abs=1e-3)
    for ours, ref in zip(model.get_weights(), net.parameters()):
        ref = ref.detach().numpy()
        np.testing.assert_allclose(
            ours, ref.T if ref.ndim == 2 else ref, rtol=1e-4, atol=1e-3
        )
