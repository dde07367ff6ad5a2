"""Optimizers: golden trajectories from torch.optim (float64), the same rules on every
backend in float32, hyperparameter validation, and a live comparison when torch is
installed."""

import json
import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from gpunn import optim
from gpunn.arena import ParameterArena, ParamSpec
from gpunn.backends import updates
from gpunn.errors import NotBuiltError

GOLDEN = json.loads((Path(__file__).parent / "data" / "optim_golden.json").read_text())
CASE_IDS = [f"{c['optimizer']}-{i}" for i, c in enumerate(GOLDEN["cases"])]


def arena_of(backend, dtype, p0, shapes=None):
    """An arena holding ``p0`` split into tensors of ``shapes`` (one by default)."""
    p0 = np.asarray(p0)
    shapes = shapes or [p0.shape]
    specs, start = [], 0
    for i, shape in enumerate(shapes):
        size = int(np.prod(shape))
        specs.append(
            (
                "layer",
                ParamSpec(f"p{i}", shape, p0[start : start + size].reshape(shape)),
            )
        )
        start += size
    return ParameterArena(backend, dtype, specs)


def flat_params(backend, arena):
    return np.concatenate(
        [backend.to_numpy(arena.view(arena.params, s)).ravel() for s in arena.slots]
    )


def run_case(backend, dtype, case, shapes=None):
    arena = arena_of(backend, dtype, GOLDEN["p0"], shapes)
    opt = getattr(optim, case["optimizer"])(**case["kwargs"])
    opt.bind(arena)
    out = []
    for g in GOLDEN["grads"]:
        host = np.zeros(arena.size)
        start = 0
        for s in arena.slots:
            host[s.offset : s.offset + s.size] = g[start : start + s.size]
            start += s.size
        arena.grads[...] = backend.asarray(host.astype(dtype))
        opt.step()
        out.append(flat_params(backend, arena))
    return np.array(out), opt


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=CASE_IDS)
def test_matches_torch_golden_float64(backend, case):
    params, opt = run_case(backend, np.float64, case)
    assert opt.steps == len(GOLDEN["grads"])
    np.testing.assert_allclose(params, case["params"], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=CASE_IDS)
def test_matches_torch_golden_float32(backend, case):
    params, _ = run_case(backend, np.float32, case)
    assert params.dtype == np.float32
    np.testing.assert_allclose(params, case["params"], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("case", GOLDEN["cases"][::3], ids=CASE_IDS[::3])
def test_layout_does_not_change_the_update(backend, case):
    """Several tensors with padding between them give the same numbers as one."""
    one, _ = run_case(backend, np.float64, case)
    many, _ = run_case(backend, np.float64, case, shapes=[(3, 4), (1,), (24,)])
    np.testing.assert_array_equal(one, many)


def test_padding_stays_zero(backend):
    """Layers write only their views, so the alignment padding keeps a zero gradient
    and every optimizer leaves it at zero (even with weight decay)."""
    arena = arena_of(backend, np.float64, np.ones(5), shapes=[(2,), (3,)])
    assert arena.size > 5
    for opt in (optim.AdamW(lr=0.1), optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.1)):
        opt.bind(arena)
        for s in arena.slots:
            arena.view(arena.grads, s)[...] = 1.0
        opt.step()
        opt.step()
        used = np.zeros(arena.size, dtype=bool)
        for s in arena.slots:
            used[s.offset : s.offset + s.size] = True
        params = backend.to_numpy(arena.params)
        assert (params[~used] == 0).all() and (params[used] != 1).all()


def test_state_is_flat_and_shares_the_layout(backend):
    arena = arena_of(backend, np.float32, np.ones(10), shapes=[(2, 3), (4,)])
    opt = optim.Adam(amsgrad=True)
    opt.bind(arena)
    assert set(opt.state) == {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    for buf in opt.state.values():
        assert buf.shape == arena.params.shape and buf.dtype == arena.params.dtype
    assert optim.SGD(lr=0.1).state_names == ()
    assert optim.SGD(lr=0.1, momentum=0.9).state_names == ("momentum_buffer",)


def test_defaults_follow_torch():
    assert optim.SGD().hyperparameters() == {
        "lr": 1e-3,
        "momentum": 0.0,
        "dampening": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
        "maximize": False,
    }
    assert optim.Adam().hyperparameters() == {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": False,
        "maximize": False,
    }
    assert optim.AdamW().weight_decay == 1e-2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: optim.SGD(lr=0), "lr must be in (0, inf), got 0.0"),
        (lambda: optim.SGD(lr=-1), "lr must be in (0, inf), got -1.0"),
        (lambda: optim.SGD(lr=float("nan")), "lr must be"),
        (lambda: optim.SGD(momentum=-0.1), "momentum must be in [0, inf), got -0.1"),
        (lambda: optim.SGD(nesterov=True), "nesterov=True needs momentum > 0"),
        (
            lambda: optim.SGD(momentum=0.9, dampening=0.1, nesterov=True),
            "dampening = 0",
        ),
        (lambda: optim.SGD(weight_decay=-1), "weight_decay must be"),
        (lambda: optim.Adam(betas=(1.0, 0.999)), "betas[0] must be in [0, 1), got 1.0"),
        (lambda: optim.Adam(betas=(0.9, -0.1)), "betas[1] must be in [0, 1), got -0.1"),
        (lambda: optim.Adam(betas=0.9), "betas must be a pair"),
        (lambda: optim.Adam(eps=0), "eps must be in (0, inf), got 0.0"),
        (lambda: optim.AdamW(weight_decay=-0.1), "weight_decay must be"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


def test_non_numeric_hyperparameter_is_a_type_error():
    with pytest.raises(TypeError, match="lr must be a real number, got str"):
        optim.Adam(lr="0.1")


def test_step_before_bind_raises():
    with pytest.raises(NotBuiltError, match="not bound"):
        optim.Adam().step()


def test_get_by_name():
    assert isinstance(optim.get("adamw", lr=0.1), optim.AdamW)
    opt = optim.SGD(lr=0.2)
    assert optim.get(opt) is opt
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optim.get("lbfgs")


@pytest.mark.torch
@pytest.mark.parametrize("case", GOLDEN["cases"], ids=CASE_IDS)
def test_live_torch_matches(case):
    """Same as the golden test, against the installed torch (catches a stale file).
    torch runs with float64 default dtype, as the generator does (NAdam's host
    ``mu_product`` is a tensor of the default dtype)."""
    torch = pytest.importorskip("torch")
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p = torch.tensor(GOLDEN["p0"], dtype=torch.float64, requires_grad=True)
        opt = getattr(torch.optim, case["optimizer"])([p], **case["kwargs"])
        theirs = []
        for g in GOLDEN["grads"]:
            p.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
            theirs.append(p.detach().numpy().copy())
    finally:
        torch.set_default_dtype(default)
    ours, _ = run_case(__import__("gpunn").get_backend("cpu"), np.float64, case)
    np.testing.assert_allclose(ours, np.array(theirs), rtol=1e-13, atol=1e-15)


HYPER = {
    "sgd": {
        "lr": 0.1,
        "momentum": 0.9,
        "dampening": 0.1,
        "nesterov": False,
        "weight_decay": 0.01,
        "maximize": False,
        "first_step": False,
    },
    "adam": {
        "lr": 1e-3,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.01,
        "decoupled": True,
        "maximize": False,
        "step_size": 1e-2,
        "bias_correction2_sqrt": 0.03,
    },
    "rmsprop": {
        "lr": 1e-2,
        "alpha": 0.9,
        "eps": 1e-8,
        "weight_decay": 0.01,
        "momentum": 0.9,
        "centered": True,
        "maximize": False,
    },
    "adagrad": {"clr": 0.05, "eps": 1e-10, "weight_decay": 0.01, "maximize": True},
    "adadelta": {
        "lr": 1.0,
        "rho": 0.9,
        "eps": 1e-6,
        "weight_decay": 0.01,
        "maximize": False,
    },
    "adamax": {
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.01,
        "maximize": False,
        "clr": 0.02,
    },
    "nadam": {
        "lr": 2e-3,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.01,
        "decoupled": True,
        "maximize": False,
        "bias_correction2": 0.003,
        "grad_coef": -0.02,
        "avg_coef": -0.2,
    },
}
# (family, number of state buffers); state buffers are >= 0, and the first one (RMSprop's
# squared-gradient average) exceeds 36 > max(grad_avg**2), so the centered sqrt is real.
BLOCKED = [
    ("sgd", 1),
    ("adam", 3),
    ("rmsprop", 3),
    ("adagrad", 1),
    ("adadelta", 2),
    ("adamax", 2),
    ("nadam", 2),
]


@pytest.mark.parametrize("size", [5, 2 * updates.BLOCK + 3, updates.PARALLEL_MIN + 77])
@pytest.mark.parametrize("family, n_state", BLOCKED)
def test_blocked_and_threaded_updates_equal_one_pass(backend, family, n_state, size):
    """Small, block-by-block and multi-threaded arenas: bitwise the reference pass."""
    rng = np.random.default_rng(size)
    host = [rng.standard_normal(size).astype(np.float32) for _ in range(2 + n_state)]
    host[2:] = [np.abs(a) for a in host[2:]]  # second moments are >= 0
    host[2] += 40
    ours = [backend.asarray(a.copy()) for a in host]
    ref = [backend.asarray(a.copy()) for a in host]
    getattr(backend, f"{family}_update_")(*ours, **HYPER[family])
    getattr(updates, f"{family}_")(backend.xp, *ref, **HYPER[family])
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            lambda a: a.astype(np.float64),
            "exp_avg must be float32 or float64 like param",
        ),
        (lambda a: a[:-1], r"exp_avg must be a contiguous 1-D array of shape \(10,\)"),
        (lambda a: a.reshape(2, 5), "contiguous 1-D"),
        (lambda a: np.repeat(a, 2)[::2], "contiguous 1-D"),
    ],
)
def test_flat_update_rejects_mismatched_arrays_and_writes_nothing(bad, message):
    backend = __import__("gpunn").get_backend("cpu")
    p, g, m, v = (np.linspace(0.1, 1, 10, dtype=np.float32) for _ in range(4))
    before = [a.copy() for a in (p, g, v)]
    with pytest.raises(ValueError, match=message):
        backend.adam_update_(p, g, bad(m), v, **HYPER["adam"])
    for a, b in zip((p, g, v), before):
        np.testing.assert_array_equal(a, b)


def _large_update_in_child(size):
    arrays = [np.ones(size, np.float32) for _ in range(3)]
    __import__("gpunn").get_backend("cpu").sgd_update_(*arrays, **HYPER["sgd"])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_large_updates_work_in_a_forked_child():
    """A child forked after the update threads started must get threads of its own
    (it inherits the executor but not its workers)."""
    size = updates.PARALLEL_MIN + 1
    _large_update_in_child(size)  # starts the pool in this process
    with warnings.catch_warnings():  # Python 3.12 warns about fork with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        child = multiprocessing.get_context("fork").Process(
            target=_large_update_in_child, args=(size,)
        )
        child.start()
    child.join(60)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung and child.exitcode == 0
