"""The toolkit as a whole against PyTorch in float64 (skipped without torch): an MLP
with BatchNorm, GELU, LeakyReLU, PReLU and ELU, an L2 kernel penalty, cross-entropy
with label smoothing and class weights, trained with each torch optimizer under a
warmup + cosine schedule and global-norm clipping; then eval-mode outputs with the
running statistics."""

import numpy as np
import pytest

import gpunn
from gpunn import layers, losses, optim, regularizers, schedules
from gpunn.layers import Dense

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

STEPS = 8
CLASS_WEIGHT = [1.0, 2.0, 0.5, 1.5]
OPTIMIZERS = [
    (
        "RMSprop",
        {"alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 1e-3},
    ),
    ("Adagrad", {"lr_decay": 1e-2, "initial_accumulator_value": 0.1}),
    ("Adadelta", {"rho": 0.8, "weight_decay": 1e-3}),
    ("Adamax", {"betas": (0.8, 0.99)}),
    ("NAdam", {"weight_decay": 1e-2, "decoupled_weight_decay": True}),
    ("Adam", {"amsgrad": True}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
]


@pytest.fixture(autouse=True)
def torch_float64():
    """NAdam keeps its running mu product in torch's default dtype: float64 here."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def build(name, kwargs, schedule):
    model = gpunn.Sequential(
        [
            # no bias before BatchNorm: its gradient is rounding noise, which
            # RMSprop-like optimizers would amplify into lr-sized steps
            Dense(12, use_bias=False, kernel_regularizer=regularizers.L2(1e-3)),
            layers.BatchNorm(),
            layers.GELU(),
            Dense(9, activation="leaky_relu"),
            layers.PReLU(),
            Dense(10, activation="elu"),
            Dense(4),
        ],
        input_dim=7,
        dtype="float64",
        backend="cpu",
        seed=3,
    )
    loss = losses.SoftmaxCrossEntropy(label_smoothing=0.1, class_weight=CLASS_WEIGHT)
    model.compile(loss, getattr(optim, name)(lr=schedule, clip_norm=1.0, **kwargs))
    return model


def torch_twin(model):
    net = torch.nn.Sequential(
        torch.nn.Linear(7, 12, bias=False),
        torch.nn.BatchNorm1d(12),
        torch.nn.GELU(),
        torch.nn.Linear(12, 9),
        torch.nn.LeakyReLU(),
        torch.nn.PReLU(),
        torch.nn.Linear(9, 10),
        torch.nn.ELU(),
        torch.nn.Linear(10, 4),
    ).double()
    with torch.no_grad():
        for param, value in zip(net.parameters(), model.get_weights()):
            value = torch.from_numpy(value.T.copy() if value.ndim == 2 else value)
            param.copy_(value.reshape(param.shape))
    return net


def torch_weights(net):
    return [
        p.detach().numpy().T if p.ndim == 2 else p.detach().numpy().reshape(-1)
        for p in net.parameters()
    ]


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_toolkit_training_matches_pytorch(name, kwargs):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((STEPS, 16, 7)) * 2
    Y = rng.integers(0, 4, (STEPS, 16))
    base_lr = 1.0 if name == "Adadelta" else 0.05
    schedule = schedules.Warmup(schedules.CosineDecay(base_lr, STEPS - 2), 2, 0.01)
    model = build(name, kwargs, schedule)
    net = torch_twin(model)
    opt = getattr(torch.optim, name)(net.parameters(), lr=schedule(0), **kwargs)
    criterion = torch.nn.CrossEntropyLoss(
        weight=torch.tensor(CLASS_WEIGHT, dtype=torch.float64), label_smoothing=0.1
    )
    for step, (x, y) in enumerate(zip(X, Y)):
        ours = model.train_step(x, y)
        for group in opt.param_groups:
            group["lr"] = schedule(step)
        opt.zero_grad()
        ref = criterion(net(torch.from_numpy(x)), torch.from_numpy(y))
        ref = ref + 1e-3 * (net[0].weight ** 2).sum()
        ref.backward()
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        assert ours == pytest.approx(ref.item(), rel=1e-10)
        assert float(model.optimizer.grad_norm) == pytest.approx(norm.item(), rel=1e-10)
    for ours, ref in zip(model.get_weights(), torch_weights(net)):
        np.testing.assert_allclose(ours.reshape(ref.shape), ref, rtol=1e-8, atol=1e-11)
    state = model.get_state()
    np.testing.assert_allclose(
        state["batchnorm_1.running_mean"], net[1].running_mean.numpy(), rtol=1e-10
    )
    np.testing.assert_allclose(
        state["batchnorm_1.running_var"], net[1].running_var.numpy(), rtol=1e-10
    )
    net.eval()
    x = rng.standard_normal((5, 7))
    np.testing.assert_allclose(
        model.predict(x),
        net(torch.from_numpy(x)).detach().numpy(),
        rtol=1e-9,
        atol=1e-12,
    )
