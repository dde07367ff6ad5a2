"""BatchNorm parity with torch.nn.BatchNorm1d in float64: training and eval outputs,
running statistics, gradients of x, gamma and beta, and a small model trained with
BatchNorm for a few steps (skipped without torch)."""

import numpy as np
import pytest

import gpunn
from gpunn.layers import BatchNorm, Dense, ReLU

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TOL = {"rtol": 1e-7, "atol": 1e-7}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"momentum": 0.1, "eps": 1e-5, "affine": True},
        {"momentum": 0.7, "eps": 1e-2, "affine": True},
        {"momentum": None, "eps": 1e-5, "affine": True},
        {"momentum": 0.1, "eps": 1e-5, "affine": False},
    ],
    ids=str,
)
def test_layer_matches_batchnorm1d(kwargs):
    rng = np.random.default_rng(0)
    ours = BatchNorm(**kwargs)
    gpunn.Sequential([ours], input_dim=5, dtype="float64", backend="cpu")
    ours.needs_dx = True
    theirs = torch.nn.BatchNorm1d(5, dtype=torch.float64, **kwargs)
    if ours.affine:
        gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
        ours.params["gamma"][...], ours.params["beta"][...] = gamma, beta
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(gamma))
            theirs.bias.copy_(torch.from_numpy(beta))
    for batch in (2, 7, 32, 3):
        x = rng.standard_normal((batch, 5)) * rng.uniform(0.1, 10, 5) + 3
        dy = rng.standard_normal((batch, 5))
        xt = torch.tensor(x, requires_grad=True)
        theirs.train().zero_grad()
        yt = theirs(xt)
        yt.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(ours.forward(x, training=True), yt.detach(), **TOL)
        np.testing.assert_allclose(ours.backward(dy), xt.grad, **TOL)
        if ours.affine:
            np.testing.assert_allclose(ours.grads["gamma"], theirs.weight.grad, **TOL)
            np.testing.assert_allclose(ours.grads["beta"], theirs.bias.grad, **TOL)
        state = ours.get_state()
        np.testing.assert_allclose(state["running_mean"], theirs.running_mean, **TOL)
        np.testing.assert_allclose(state["running_var"], theirs.running_var, **TOL)
        assert state["num_batches_tracked"] == theirs.num_batches_tracked.item()
        x_eval = rng.standard_normal((4, 5)) * 2
        y_eval = theirs.eval()(torch.from_numpy(x_eval)).detach()
        np.testing.assert_allclose(ours.forward(x_eval), y_eval, **TOL)


def test_model_with_batchnorm_trains_like_pytorch():
    rng = np.random.default_rng(1)
    model = gpunn.Sequential(
        [Dense(8), BatchNorm(momentum=0.2), ReLU(), Dense(3)],
        input_dim=4,
        dtype="float64",
        backend="cpu",
        seed=0,
    )
    model.compile("softmax_cross_entropy", gpunn.optim.SGD(lr=0.1, momentum=0.9))
    w1, b1, gamma, beta, w2, b2 = (torch.from_numpy(w) for w in model.get_weights())
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 8, dtype=torch.float64),
        torch.nn.BatchNorm1d(8, momentum=0.2, dtype=torch.float64),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 3, dtype=torch.float64),
    )
    with torch.no_grad():
        for param, value in zip(net.parameters(), (w1.T, b1, gamma, beta, w2.T, b2)):
            param.copy_(value)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(6):
        x, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
        loss = model.train_step(x, y)
        opt.zero_grad()
        expected = torch.nn.functional.cross_entropy(
            net.train()(torch.from_numpy(x)), torch.from_numpy(y)
        )
        expected.backward()
        opt.step()
        np.testing.assert_allclose(loss, expected.item(), rtol=1e-6, atol=1e-6)
    ours = model.get_weights()
    theirs = [p.detach().numpy() for p in net.parameters()]
    theirs[0], theirs[4] = theirs[0].T, theirs[4].T
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    state = model.layers[1].get_state()
    np.testing.assert_allclose(state["running_var"], net[1].running_var, rtol=1e-6)
    x = rng.standard_normal((5, 4))
    expected = net.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6, atol=1e-6)
