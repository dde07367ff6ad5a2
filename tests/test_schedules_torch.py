"""Schedules vs torch.optim.lr_scheduler, live (skipped without torch): the lr of every
update when the torch scheduler is stepped after each optimizer step, and the golden
sequences committed in test_schedules.py."""

import warnings

import numpy as np
import pytest
from test_schedules import GOLDEN_IDS, TORCH_GOLDEN

from gpunn import schedules

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
lr_scheduler = torch.optim.lr_scheduler


def torch_scheduler(opt, config):
    """The torch scheduler (stepped per update) equivalent to a schedule config."""
    name = config["name"]
    if name == "step":
        return lr_scheduler.StepLR(opt, config["step_size"], config.get("gamma", 0.1))
    if name == "exponential":
        return lr_scheduler.ExponentialLR(opt, gamma=1.0 - config["decay"])
    if name == "polynomial":
        assert config.get("end_lr", 0.0) == 0.0, "torch's PolynomialLR ends at 0"
        return lr_scheduler.PolynomialLR(
            opt, total_iters=config["total_steps"], power=config.get("power", 1.0)
        )
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(
            opt, T_max=config["total_steps"], eta_min=config.get("min_lr", 0.0)
        )
    assert name == "warmup", name
    after, warmup_steps = config["after"], config["warmup_steps"]
    start_factor = config["start_lr"] / schedules.from_config(after)(0)
    linear = lr_scheduler.LinearLR(
        opt, start_factor=start_factor, total_iters=warmup_steps
    )
    return lr_scheduler.SequentialLR(
        opt, [linear, torch_scheduler(opt, after)], milestones=[warmup_steps]
    )


def torch_lrs(config, n_steps):
    """The lr torch uses for updates 0 .. n_steps - 1, in float64."""
    base = config["after"]["lr"] if config["name"] == "warmup" else config["lr"]
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([param], lr=base)
    with warnings.catch_warnings():  # SequentialLR's deprecated step(epoch) call
        warnings.simplefilter("ignore", UserWarning)
        scheduler = torch_scheduler(opt, config)
        lrs = []
        for _ in range(n_steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            scheduler.step()
    return lrs


def gpunn_lrs(config, n_steps):
    schedule = schedules.from_config(config)
    return [schedule(k) for k in range(n_steps)]


# Cosines end at update N_STEPS - 1 at the latest: beyond it torch's lr rises again
# (test_documented_difference_after_the_cosine_ends).
N_STEPS = 81
CASES = [
    {"name": "step", "lr": 0.3, "step_size": 7, "gamma": 0.3},
    {"name": "step", "lr": 0.01, "step_size": 1},
    {"name": "exponential", "lr": 0.1, "decay": 0.01},
    {"name": "exponential", "lr": 2.0, "decay": 0.3},
    {"name": "polynomial", "lr": 0.1, "total_steps": 50},
    {"name": "polynomial", "lr": 0.1, "total_steps": 50, "power": 0.5},
    {"name": "polynomial", "lr": 0.05, "total_steps": 30, "power": 3.0},
    {"name": "cosine", "lr": 0.1, "total_steps": 80},
    {"name": "cosine", "lr": 0.5, "total_steps": 80, "min_lr": 0.01},
    {
        "name": "warmup",
        "warmup_steps": 10,
        "start_lr": 0.001,
        "after": {"name": "cosine", "lr": 0.1, "total_steps": 70, "min_lr": 1e-4},
    },
    {
        "name": "warmup",
        "warmup_steps": 7,
        "start_lr": 0.05,
        "after": {"name": "exponential", "lr": 0.2, "decay": 0.05},
    },
    {
        "name": "warmup",
        "warmup_steps": 3,
        "start_lr": 0.1,
        "after": {"name": "step", "lr": 0.1, "step_size": 5, "gamma": 0.5},
    },
]


@pytest.mark.parametrize("config", CASES, ids=lambda c: c["name"])
def test_per_update_lr_matches_torch(config):
    np.testing.assert_allclose(
        gpunn_lrs(config, N_STEPS), torch_lrs(config, N_STEPS), rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("config, expected", TORCH_GOLDEN, ids=GOLDEN_IDS)
def test_committed_golden_values_come_from_torch(config, expected):
    np.testing.assert_allclose(
        torch_lrs(config, len(expected)), expected, rtol=1e-12, atol=1e-15
    )


def test_documented_difference_after_the_cosine_ends():
    config = {"name": "cosine", "lr": 0.1, "total_steps": 10, "min_lr": 0.01}
    ours, theirs = gpunn_lrs(config, 16), torch_lrs(config, 16)
    np.testing.assert_allclose(ours[:11], theirs[:11], rtol=1e-12)
    assert ours[11:] == [0.01] * 5  # stays at min_lr, as Keras CosineDecay
    assert all(t > 0.01 for t in theirs[11:])  # torch follows the cosine back up
