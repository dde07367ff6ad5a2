"""Optimizer toolkit: LARS and LAMB against float64 per-tensor loop references, the
trust-ratio ops, gradient clipping, the lr schedule hook, host state and validation.
(The torch.optim rules of RMSprop, Adagrad, Adadelta, Adamax and NAdam are checked by
the golden cases of test_optim.py.)"""

import inspect
import json

import numpy as np
import pytest

import gpunn
from gpunn import optim
from gpunn.arena import ParameterArena, ParamSpec
from gpunn.backends import updates
from gpunn.errors import NotBuiltError
from gpunn.layers import Dense
from gpunn.optim.large_batch import segment_layout

KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY

# 2-D and 1-D tensors with padding between them.
SHAPES = [(4, 3), (3,), (5, 2), (2,), (7,)]
STEPS = 5
NAMES = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam"]
NAMES += ["lars", "lamb"]


def tensors(seed=0, shapes=SHAPES):
    """Initial parameters and STEPS gradients (float64); with the default shapes,
    tensor 2 starts at zero and tensor 3 never gets a gradient."""
    rng = np.random.default_rng(seed)
    p0 = [rng.standard_normal(s) for s in shapes]
    grads = [
        [rng.standard_normal(s) * (i + 1) for i, s in enumerate(shapes)]
        for _ in range(STEPS)
    ]
    if shapes is SHAPES:
        p0[2][...] = 0.0
        for g in grads:
            g[3][...] = 0.0
    return p0, grads


def make_arena(backend, dtype, p0):
    specs = [("layer", ParamSpec(f"p{i}", p.shape, p)) for i, p in enumerate(p0)]
    return ParameterArena(backend, dtype, specs)


def set_grads(backend, arena, grads):
    for slot, g in zip(arena.slots, grads):
        arena.view(arena.grads, slot)[...] = backend.asarray(g.astype(arena.dtype))


def host_params(backend, arena):
    return [backend.to_numpy(arena.view(arena.params, s)).copy() for s in arena.slots]


def run(backend, dtype, opt, p0, grads):
    arena = make_arena(backend, dtype, p0)
    opt.bind(arena)
    out = []
    for g in grads:
        set_grads(backend, arena, g)
        opt.step()
        out.append(host_params(backend, arena))
    return out, arena


def norm(a):
    return float(np.sqrt(np.sum(np.asarray(a, np.float64) ** 2)))


def lars_reference(p0, grads, lr, momentum, weight_decay, coef, eps, exclude_1d, sign):
    params, bufs, out = [p.copy() for p in p0], [None] * len(p0), []
    for t, step_grads in enumerate(grads):
        for i, (w, g) in enumerate(zip(params, step_grads)):
            g = sign * g
            adapt = not (exclude_1d and w.ndim <= 1)
            decay = weight_decay if adapt else 0.0
            ratio = 1.0
            if adapt and norm(w) > 0 and norm(g) > 0:
                ratio = coef * norm(w) / (norm(g) + decay * norm(w) + eps)
            d = ratio * (g + decay * w)
            if momentum:
                bufs[i] = d if t == 0 else momentum * bufs[i] + d
                d = bufs[i]
            params[i] = w - lr * d
        out.append([p.copy() for p in params])
    return out


def lamb_reference(p0, grads, lr, betas, eps, weight_decay, exclude_1d, sign):
    (b1, b2), params, out = betas, [p.copy() for p in p0], []
    m, v = [np.zeros_like(p) for p in p0], [np.zeros_like(p) for p in p0]
    for t, step_grads in enumerate(grads, 1):
        for i, (w, g) in enumerate(zip(params, step_grads)):
            g = sign * g
            adapt = not (exclude_1d and w.ndim <= 1)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            r = (m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + eps)
            r = r + (weight_decay if adapt else 0.0) * w
            ratio = norm(w) / norm(r) if adapt and norm(w) > 0 and norm(r) > 0 else 1.0
            params[i] = w - lr * ratio * r
        out.append([p.copy() for p in params])
    return out


def assert_trajectory(ours, ref, dtype):
    # the README's tolerances: multi-step training vs reference, 1e-6 (float64),
    # 1e-3/1e-4 (float32)
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (1e-3, 1e-4)
    for got, want in zip(ours, ref):
        for a, b in zip(got, want):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


LARS_CASES = [
    {},
    {"lr": 0.5, "trust_coefficient": 0.1, "weight_decay": 0.05},
    {"lr": 0.3, "trust_coefficient": 0.2, "weight_decay": 0.1, "exclude_1d": True},
    {"lr": 0.1, "momentum": 0, "trust_coefficient": 0.5, "maximize": True},
]


@pytest.mark.parametrize("kwargs", LARS_CASES)
def test_lars_matches_per_tensor_reference(backend, dtype, kwargs):
    p0, grads = tensors()
    opt = optim.LARS(**kwargs)
    ours, _ = run(backend, dtype, opt, p0, grads)
    ref = lars_reference(
        p0,
        grads,
        opt.lr,
        opt.momentum,
        opt.weight_decay,
        opt.trust_coefficient,
        opt.eps,
        opt.exclude_1d,
        -1.0 if opt.maximize else 1.0,
    )
    assert_trajectory(ours, ref, dtype)


LAMB_CASES = [
    {},
    {"lr": 0.05, "betas": (0.5, 0.9), "weight_decay": 0.1, "eps": 1e-4},
    {"lr": 0.02, "weight_decay": 0.3, "exclude_1d": True, "maximize": True},
]


@pytest.mark.parametrize("kwargs", LAMB_CASES)
def test_lamb_matches_per_tensor_reference(backend, dtype, kwargs):
    p0, grads = tensors(1)
    opt = optim.LAMB(**kwargs)
    ours, _ = run(backend, dtype, opt, p0, grads)
    sign = -1.0 if opt.maximize else 1.0
    ref = lamb_reference(
        p0, grads, opt.lr, opt.betas, opt.eps, opt.weight_decay, opt.exclude_1d, sign
    )
    assert_trajectory(ours, ref, dtype)


def test_trust_ratio_ops(backend, dtype):
    rng = np.random.default_rng(3)
    sizes = [5, 3, 1, 4]
    flat = rng.standard_normal(sum(sizes)).astype(dtype)
    starts = backend.asarray(np.cumsum([0] + sizes[:-1]))
    norms = backend.segment_norms(backend.asarray(flat), starts)
    assert norms.dtype == dtype and norms.shape == (4,)
    want = [norm(part) for part in np.split(flat, np.cumsum(sizes)[:-1])]
    np.testing.assert_allclose(backend.to_numpy(norms), want, rtol=1e-6)
    w = backend.asarray(np.array([2.0, 0.0, 3.0, 1.0], dtype))
    u = backend.asarray(np.array([4.0, 1.0, 0.0, 0.5], dtype))
    ratio = backend.to_numpy(backend.trust_ratio(w, u, 0.1, 0.5, 0.0))
    assert ratio.dtype == dtype  # 1 where a norm is 0, without a division warning
    np.testing.assert_allclose(ratio, [0.1 * 2 / 5, 1, 1, 0.1 / 1.0], rtol=1e-6)


def test_layout_skips_empty_tensors_and_empty_arenas_step(backend):
    p0 = [np.ones((2, 3)), np.zeros((0,)), np.full(3, 2.0), np.zeros((4, 0))]
    arena = make_arena(backend, np.float64, p0)
    ids, starts, adapt = (backend.to_numpy(a) for a in segment_layout(arena, True))
    first, third = arena.slots[0].offset, arena.slots[2].offset
    assert starts.tolist() == [first, third] and adapt.tolist() == [1.0, 0.0]
    assert ids.tolist() == [0] * (third - first) + [1] * (arena.size - third)
    for name in ("lars", "lamb"):
        opt = optim.get(name)
        opt.bind(arena)
        arena.grads[...] = 1.0
        opt.step()
    assert np.isfinite(backend.to_numpy(arena.params)).all()
    for name in NAMES:  # a model without parameters (e.g. only activations)
        opt = optim.get(name, clip_norm=1.0)
        opt.bind(make_arena(backend, np.float32, []))
        opt.step()
        assert opt.steps == 1 and float(opt.grad_norm) == 0


def lars_one_pass(backend, opt, p, g, state, seg, starts, adapt):
    w_norm, g_norm = backend.segment_norms(p, starts), backend.segment_norms(g, starts)
    decay = opt.weight_decay * adapt
    ratio = backend.trust_ratio(w_norm, g_norm, opt.trust_coefficient, decay, opt.eps)
    hyper = {"ratio": backend.xp.where(adapt > 0, ratio, 1), "adapt": adapt}
    hyper.update(weight_decay=opt.weight_decay, lr=opt.lr, momentum=opt.momentum)
    hyper.update(maximize=False, first_step=True)
    updates.lars_(backend.xp, p, g, state["momentum_buffer"], seg, **hyper)


def lamb_one_pass(backend, opt, p, g, state, seg, starts, adapt):
    (b1, b2), r = opt.betas, backend.xp.empty_like(p)
    hyper = {"beta1": b1, "beta2": b2, "eps": opt.eps, "maximize": False}
    hyper.update(weight_decay=opt.weight_decay, adapt=adapt)
    hyper.update(bias_correction1=1 - b1, bias_correction2=1 - b2)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    updates.lamb_direction_(backend.xp, p, g, m, v, r, seg, **hyper)
    w_norm, r_norm = backend.segment_norms(p, starts), backend.segment_norms(r, starts)
    ratio = backend.xp.where(adapt > 0, backend.trust_ratio(w_norm, r_norm), 1)
    updates.lamb_apply_(backend.xp, p, r, seg, ratio=ratio, lr=opt.lr)


@pytest.mark.parametrize(
    "name, one_pass", [("lars", lars_one_pass), ("lamb", lamb_one_pass)]
)
def test_large_batch_blocked_and_threaded_equal_one_pass(backend, name, one_pass):
    """The elementwise halves run on blocks and threads: bitwise one reference pass."""
    shapes = [(updates.PARALLEL_MIN // 2, 2), (77,), (1000,)]
    p0, grads = tensors(2, shapes)
    arena = make_arena(backend, np.float32, p0)
    opt = optim.get(name, weight_decay=0.01, exclude_1d=True)
    opt.bind(arena)
    assert opt._layout[2] is not None  # the per-tensor gathers are exercised
    set_grads(backend, arena, grads[0])
    state = {k: backend.xp.array(v) for k, v in opt.state.items()}
    p_ref = backend.xp.array(arena.params)
    one_pass(backend, opt, p_ref, arena.grads, state, *opt._layout)
    opt.step()
    np.testing.assert_array_equal(
        backend.to_numpy(arena.params), backend.to_numpy(p_ref)
    )


LARS_KEYS = {"weight_decay": 0.0, "trust_coefficient": 1e-3, "eps": 0.0}


@pytest.mark.parametrize(
    "op, n_state, keys",
    [
        ("rmsprop_update_", 3, {}),
        ("adagrad_update_", 1, {}),
        ("adadelta_update_", 2, {}),
        ("adamax_update_", 2, {}),
        ("nadam_update_", 2, {}),
        ("lars_update_", 1, LARS_KEYS),
        ("lamb_update_", 2, {"lr": 1e-3}),
    ],
)
def test_fused_updates_reject_mismatched_arrays_and_write_nothing(op, n_state, keys):
    """The checks run before any write (so the hyperparameters are not needed)."""
    update = getattr(gpunn.get_backend("cpu"), op)
    p, g = np.ones(6, np.float32), np.ones(6, np.float32)
    good = [np.ones(6, np.float32) for _ in range(n_state)]
    segments = (np.zeros(6, np.intp), np.zeros(1, np.intp), None) if keys else ()
    with pytest.raises(ValueError, match=r"contiguous 1-D array of shape \(6,\)"):
        update(p, g, *good[:-1], np.ones(5, np.float32), *segments, **keys)
    if keys:
        with pytest.raises(ValueError, match="segment_ids must be integers"):
            update(p, g, *good, np.zeros(6, np.float32), *segments[1:], **keys)
    assert (p == 1).all() and all((a == 1).all() for a in good)


@pytest.mark.parametrize("name", NAMES)
def test_padding_stays_zero_and_dtype_is_kept(backend, name):
    p0, grads = tensors(4)
    arena = make_arena(backend, np.float32, p0)
    used = np.zeros(arena.size, dtype=bool)
    for s in arena.slots:
        used[s.offset : s.offset + s.size] = True
    assert not used.all()
    opt = optim.get(name, weight_decay=0.1)
    opt.bind(arena)
    for g in grads[:3]:
        set_grads(backend, arena, g)
        opt.step()
    params = backend.to_numpy(arena.params)
    assert params.dtype == np.float32 and (params[~used] == 0).all()
    assert np.isfinite(params).all()
    assert all(buf.dtype == np.float32 for buf in opt.state.values())


# ---------------------------------------------------------------- gradient clipping
def grads_arena(backend, dtype, scale):
    p0, grads = tensors(5)
    arena = make_arena(backend, dtype, p0)
    set_grads(backend, arena, [g * scale for g in grads[0]])
    return arena, [g * scale for g in grads[0]]


@pytest.mark.parametrize("scale", [10.0, 1e-3])
def test_clip_grad_norm(backend, dtype, scale):
    arena, grads = grads_arena(backend, dtype, scale)
    before = backend.to_numpy(arena.grads).copy()
    pre = optim.clip_grad_norm_(arena, 1.0)
    assert pre.shape == () and pre.dtype == dtype
    total = norm(np.concatenate([g.ravel() for g in grads]))
    np.testing.assert_allclose(float(backend.to_numpy(pre)), total, rtol=1e-6)
    after = backend.to_numpy(arena.grads)
    if total <= 1.0:
        np.testing.assert_array_equal(after, before)  # no-op below the threshold
    else:
        assert norm(after) <= 1.0 * (1 + 1e-6)
        np.testing.assert_allclose(after, before * (1.0 / (total + 1e-6)), rtol=1e-6)


def test_clip_grad_value_and_models(backend):
    model = gpunn.Sequential([Dense(3)], input_dim=4, backend=backend.name, seed=0)
    grads = model.arena.grads
    grads[...] = backend.asarray(np.linspace(-2, 2, grads.size).astype(grads.dtype))
    optim.clip_grad_value_(model, 0.5)
    host = backend.to_numpy(grads).copy()
    assert host.max() == 0.5 and host.min() == -0.5
    assert float(optim.clip_grad_norm_(model, 1e-3)) == pytest.approx(norm(host), 1e-6)
    with pytest.raises(NotBuiltError, match="not built"):
        optim.clip_grad_norm_(gpunn.Sequential([Dense(3)], backend="cpu"), 1.0)
    with pytest.raises(TypeError, match="model must be"):
        optim.clip_grad_value_(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="max_norm must be in"):
        optim.clip_grad_norm_(model, 0)
    with pytest.raises(ValueError, match="clip_value must be in"):
        optim.clip_grad_value_(model, -1)


def test_optimizer_clips_value_then_norm_before_the_update(backend, dtype):
    arena, grads = grads_arena(backend, dtype, 3.0)
    p0 = host_params(backend, arena)
    opt = optim.SGD(lr=0.5, clip_value=1.0, clip_norm=2.0)
    opt.bind(arena)
    opt.step()
    clipped = [np.clip(g, -1.0, 1.0) for g in grads]
    total = norm(np.concatenate([g.ravel() for g in clipped]))
    assert total > 2.0
    np.testing.assert_allclose(float(backend.to_numpy(opt.grad_norm)), total, 1e-6)
    for p, w, g in zip(host_params(backend, arena), p0, clipped):
        np.testing.assert_allclose(p, w - 0.5 * g * 2.0 / (total + 1e-6), 1e-5, 1e-6)
    assert optim.Adam(clip_value=1.0).grad_norm is None


@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_takes_clip_arguments(name):
    opt = optim.get(name, clip_norm=1.0, clip_value=2.0)
    assert opt.hyperparameters()["clip_norm"] == 1.0
    arena, _ = grads_arena(gpunn.get_backend("cpu"), np.float64, 10.0)
    opt.bind(arena)
    opt.step()
    assert float(opt.grad_norm) > 1.0 and norm(arena.grads) <= 1.0 + 1e-6
    params = inspect.signature(type(opt)).parameters
    assert params["clip_norm"].kind == params["clip_value"].kind == KEYWORD_ONLY


# ---------------------------------------------------------------- schedule hook
class Warmup:
    """A schedule with get_config (as gpunn.schedules has): linear warmup, then 1/t."""

    def __init__(self, lr):
        self.lr = lr

    def __call__(self, step):
        return self.lr * min(1.0, (step + 1) / 3) / (1 + 0.1 * step)

    def get_config(self):
        return {"name": "warmup", "lr": self.lr}


SCHEDULED = [
    ("sgd", {"momentum": 0.9, "weight_decay": 0.01}),
    ("adamw", {}),
    ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("adagrad", {"lr_decay": 0.1}),
    ("adadelta", {}),
    ("adamax", {}),
    ("nadam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("lars", {"weight_decay": 0.01, "trust_coefficient": 0.1}),
    ("lamb", {}),
]


@pytest.mark.parametrize("name, kwargs", SCHEDULED)
def test_schedule_equals_setting_lr_by_hand(backend, name, kwargs):
    p0, grads = tensors(6)
    schedule = Warmup(0.05)
    scheduled, _ = run(
        backend, np.float32, optim.get(name, lr=schedule, **kwargs), p0, grads
    )
    manual = optim.get(name, lr=1.0, **kwargs)
    arena = make_arena(backend, np.float32, p0)
    manual.bind(arena)
    for step, g in enumerate(grads):
        manual.lr = schedule(step)
        set_grads(backend, arena, g)
        manual.step()
        for a, b in zip(host_params(backend, arena), scheduled[step]):
            np.testing.assert_array_equal(a, b)
    constant, _ = run(
        backend, np.float32, optim.get(name, lr=0.05, **kwargs), p0, grads
    )
    assert not np.array_equal(constant[-1][0], scheduled[-1][0])  # the lr mattered


def test_lr_property_scale_and_assignment():
    opt = optim.Adam(lr=Warmup(0.3))
    assert opt.lr == pytest.approx(0.1) and isinstance(opt.lr, float)
    assert isinstance(opt.schedule, Warmup)
    opt.lr_scale = 0.5
    assert opt.lr == pytest.approx(0.05)
    opt.steps = 2
    assert opt.lr == pytest.approx(0.3 / 1.2 * 0.5)
    opt.lr = 0.01  # a constant replaces the schedule; the scale starts again at 1
    assert opt.lr == 0.01 and opt.schedule is None and opt.lr_scale == 1.0
    opt.lr_scale = 0.1
    assert opt.lr == pytest.approx(1e-3)
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="lr must be in"):
            opt.lr = bad
        with pytest.raises(ValueError, match="lr_scale must be in"):
            opt.lr_scale = bad
    assert opt.lr == pytest.approx(1e-3)  # nothing changed


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), "fast"])
def test_bad_schedule_value_raises_naming_the_step_and_changes_nothing(value):
    backend = gpunn.get_backend("cpu")
    p0, grads = tensors(7)
    opt = optim.NAdam(lr=lambda step: 0.01 if step < 2 else value, clip_norm=0.1)
    _, arena = run(backend, np.float64, opt, p0, grads[:2])
    before = [a.copy() for a in (arena.params, arena.grads, *opt.state.values())]
    host = opt.host_state()
    with pytest.raises(ValueError, match="at step 2"):
        opt.step()
    after = (arena.params, arena.grads, *opt.state.values())
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)
    assert opt.host_state() == host and opt.steps == 2


def test_zero_lr_from_a_schedule_is_allowed():
    p0, grads = tensors(8)
    ours, _ = run(
        gpunn.get_backend("cpu"), np.float64, optim.SGD(lambda s: 0.0), p0, grads
    )
    np.testing.assert_array_equal(ours[-1][0], p0[0])


def test_hyperparameters_are_json():
    assert optim.SGD(lr=Warmup(0.1)).hyperparameters()["lr"] == {
        "name": "warmup",
        "lr": 0.1,
    }
    assert "lambda" in optim.Adam(lr=lambda s: 0.1).hyperparameters()["lr"]
    for name in NAMES:
        hyper = optim.get(name, clip_value=1.0).hyperparameters()
        assert json.loads(json.dumps(hyper))["clip_value"] == 1.0
        assert "clip_norm" not in hyper
        assert repr(optim.get(name)).startswith(type(optim.get(name)).__name__ + "(")


# ---------------------------------------------------------------- host state
def test_host_state_round_trip_resumes_bitwise():
    backend = gpunn.get_backend("cpu")
    p0, grads = tensors(9)
    full, _ = run(backend, np.float64, optim.NAdam(lr=Warmup(0.01)), p0, grads)
    first = optim.NAdam(lr=Warmup(0.01))
    _, arena = run(backend, np.float64, first, p0, grads[:2])
    saved = json.loads(json.dumps(first.host_state()))
    assert set(saved) == {"steps", "lr_scale", "mu_product"} and saved["steps"] == 2
    resumed = optim.NAdam(lr=Warmup(0.01))
    arena2 = make_arena(backend, np.float64, host_params(backend, arena))
    resumed.bind(arena2)
    for key, buf in first.state.items():
        resumed.state[key][...] = buf
    resumed.load_host_state(saved)
    for step, g in enumerate(grads[2:], 2):
        set_grads(backend, arena2, g)
        resumed.step()
        for a, b in zip(host_params(backend, arena2), full[step]):
            np.testing.assert_array_equal(a, b)


def test_snapshot_restore_undoes_steps_and_lr_changes():
    backend = gpunn.get_backend("cpu")
    p0, grads = tensors(10)
    full, _ = run(backend, np.float64, optim.NAdam(lr=Warmup(0.01)), p0, grads)
    opt = optim.NAdam(lr=Warmup(0.01))
    _, arena = run(backend, np.float64, opt, p0, grads[:2])
    saved, params = opt.snapshot(), arena.params.copy()
    opt.lr, opt.lr_scale = 0.5, 0.1  # an lr sweep, as lr_find does
    for g in grads[2:4]:
        set_grads(backend, arena, g)
        opt.step()
    arena.params[...] = params  # the model restores its own parameters
    opt.restore(saved)
    assert opt.steps == 2 and isinstance(opt.schedule, Warmup) and opt.lr_scale == 1
    set_grads(backend, arena, grads[2])
    opt.step()
    for a, b in zip(host_params(backend, arena), full[2]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "state, message",
    [
        ({"steps": 1, "lr_scale": 1.0}, "host state must have keys"),
        ({"steps": -1, "lr_scale": 1.0, "mu_product": 0.5}, "steps must be an int"),
        ({"steps": 1, "lr_scale": 0, "mu_product": 0.5}, "lr_scale must be in"),
        ({"steps": 1, "lr_scale": 1, "mu_product": "x"}, "mu_product must be a real"),
    ],
)
def test_bad_host_state_raises_and_changes_nothing(state, message):
    opt = optim.NAdam()
    with pytest.raises((ValueError, TypeError), match=message):
        opt.load_host_state(state)
    assert opt.host_state() == {"steps": 0, "lr_scale": 1.0, "mu_product": 1.0}


# ---------------------------------------------------------------- construction
def test_get_knows_every_name_and_defaults_follow_torch():
    assert optim.names() == sorted(NAMES)
    for name in NAMES:
        assert type(optim.get(name.upper())).__name__.lower() == name
    assert optim.RMSprop().hyperparameters() == {
        "lr": 1e-2,
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": False,
        "maximize": False,
    }
    assert (optim.Adagrad().lr, optim.Adagrad().eps) == (1e-2, 1e-10)
    assert (optim.Adadelta().lr, optim.Adadelta().rho) == (1.0, 0.9)
    assert (optim.Adamax().lr, optim.NAdam().momentum_decay) == (2e-3, 4e-3)
    assert (optim.LARS().lr, optim.LARS().momentum) == (1.0, 0.9)
    lamb = optim.LAMB()
    assert (lamb.lr, lamb.betas, lamb.eps, lamb.weight_decay) == (
        1e-3,
        (0.9, 0.999),
        1e-6,
        0.01,
    )


def test_adagrad_initial_accumulator_fills_the_state():
    opt = optim.Adagrad(initial_accumulator_value=0.3)
    opt.bind(make_arena(gpunn.get_backend("cpu"), np.float32, tensors()[0]))
    assert (opt.state["sum"] == np.float32(0.3)).all()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: optim.RMSprop(alpha=1.0), "alpha must be in [0, 1), got 1.0"),
        (lambda: optim.RMSprop(eps=0), "eps must be in (0, inf), got 0.0"),
        (lambda: optim.RMSprop(momentum=-1), "momentum must be in [0, inf), got -1.0"),
        (lambda: optim.Adagrad(lr_decay=-0.1), "lr_decay must be in [0, inf)"),
        (
            lambda: optim.Adagrad(initial_accumulator_value=-1),
            "initial_accumulator_value must be in [0, inf), got -1.0",
        ),
        (lambda: optim.Adadelta(rho=1.5), "rho must be in [0, 1], got 1.5"),
        (lambda: optim.Adadelta(lr=0), "lr must be in (0, inf), got 0.0"),
        (lambda: optim.Adamax(betas=(0.9, 1.0)), "betas[1] must be in [0, 1)"),
        (lambda: optim.NAdam(momentum_decay=-1), "momentum_decay must be in [0, inf)"),
        (lambda: optim.NAdam(weight_decay=-1), "weight_decay must be in [0, inf)"),
        (lambda: optim.LARS(trust_coefficient=0), "trust_coefficient must be in (0"),
        (lambda: optim.LARS(eps=-1), "eps must be in [0, inf), got -1.0"),
        (lambda: optim.LAMB(betas=(1.2, 0.9)), "betas[0] must be in [0, 1), got 1.2"),
        (lambda: optim.LAMB(eps=0), "eps must be in (0, inf)"),
        (lambda: optim.SGD(clip_norm=0), "clip_norm must be in (0, inf), got 0.0"),
        (lambda: optim.LAMB(clip_value=-1), "clip_value must be in (0, inf)"),
        (lambda: optim.Adam(clip_norm=float("nan")), "clip_norm must be in"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)
