"""Live comparison with PyTorch in float64 (skipped without torch): every torch.optim
rule over several tensors with a LambdaLR-style schedule and global-norm clipping, and
the clipping functions against ``torch.nn.utils``."""

import numpy as np
import pytest

import gpunn
from gpunn import optim
from gpunn.arena import ParameterArena, ParamSpec

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SHAPES = [(4, 3), (3,), (5, 2), (7,)]
STEPS = 6
OPTIMIZERS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
    ("AdamW", {"lr": 0.02}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1, "initial_accumulator_value": 0.2}),
    ("Adadelta", {"lr": 0.5, "weight_decay": 0.01, "maximize": True}),
    ("Adamax", {"lr": 0.02, "betas": (0.8, 0.99), "weight_decay": 0.05}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
]


@pytest.fixture(autouse=True)
def float64_default():
    """torch keeps NAdam's mu_product in its default dtype; gpunn's is float64."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def factor(step):
    return min(1.0, (step + 1) / 3) * 0.9**step


def problem(seed):
    rng = np.random.default_rng(seed)
    p0 = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) * 2 for s in SHAPES] for _ in range(STEPS)]
    return p0, grads


def make_arena(p0):
    specs = [("layer", ParamSpec(f"p{i}", p.shape, p)) for i, p in enumerate(p0)]
    return ParameterArena(gpunn.get_backend("cpu"), np.float64, specs)


def set_grads(arena, grads):
    for slot, g in zip(arena.slots, grads):
        arena.view(arena.grads, slot)[...] = g


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_scheduled_clipped_trajectory_matches_torch(name, kwargs):
    p0, grads = problem(0)
    base_lr = kwargs["lr"]
    ours = getattr(optim, name)(
        **{**kwargs, "lr": lambda step: base_lr * factor(step)}, clip_norm=3.0
    )
    arena = make_arena(p0)
    ours.bind(arena)
    params = [torch.tensor(p, requires_grad=True) for p in p0]
    theirs = getattr(torch.optim, name)(params, **kwargs)
    schedule = torch.optim.lr_scheduler.LambdaLR(theirs, factor)
    for step, g in enumerate(grads):
        set_grads(arena, g)
        ours.step()
        for p, gi in zip(params, g):
            p.grad = torch.tensor(gi)
        norm = torch.nn.utils.clip_grad_norm_(params, 3.0)
        theirs.step()
        schedule.step()
        assert float(ours.grad_norm) == pytest.approx(norm.item(), rel=1e-14)
        for slot, p in zip(arena.slots, params):
            np.testing.assert_allclose(
                arena.view(arena.params, slot), p.detach().numpy(), 1e-12, 1e-14
            )


@pytest.mark.parametrize("scale", [5.0, 0.01])
def test_clip_grad_norm_matches_torch(scale):
    p0, grads = problem(1)
    arena = make_arena(p0)
    set_grads(arena, [g * scale for g in grads[0]])
    params = [torch.tensor(p, requires_grad=True) for p in p0]
    for p, g in zip(params, grads[0]):
        p.grad = torch.tensor(g * scale)
    ours = optim.clip_grad_norm_(arena, 1.5)
    theirs = torch.nn.utils.clip_grad_norm_(params, 1.5)
    assert float(ours) == pytest.approx(theirs.item(), rel=1e-14)
    for slot, p in zip(arena.slots, params):
        np.testing.assert_allclose(
            arena.view(arena.grads, slot), p.grad.numpy(), rtol=1e-14, atol=0
        )


def test_clip_grad_value_matches_torch():
    p0, grads = problem(2)
    arena = make_arena(p0)
    set_grads(arena, grads[0])
    params = [torch.tensor(p, requires_grad=True) for p in p0]
    for p, g in zip(params, grads[0]):
        p.grad = torch.tensor(g)
    optim.clip_grad_value_(arena, 0.7)
    torch.nn.utils.clip_grad_value_(params, 0.7)
    for slot, p in zip(arena.slots, params):
        np.testing.assert_array_equal(arena.view(arena.grads, slot), p.grad.numpy())
