"""The segmented and reduction kernels of the optimizer ops match the reference.

LARS and LAMB (per-tensor trust ratios over a chunk table), ``segment_norms``,
``global_norm``, norm and value clipping and ``step_is_finite``, on the kernel backends
against the NumPy reference: arenas of 0, 1, odd and more elements than one grid,
tensors from one element to several chunks, adapt masks, float32 and float64, every
option, several steps with the state carried; reductions against float64 and bitwise
run to run; bad input raises as the reference does. (``test_kernels_optim.py``
covers the elementwise updates, ``test_kernel_training.py`` whole models.)
"""

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close

import gpunn
from gpunn.layers import Dense

HUGE = 3000  # several table chunks (segments.CHUNK = 1024) and more than one grid
LAYOUTS = {  # tensor sizes of an arena
    "one": [1],
    "odd": [1, 30, 1, 5],
    "large": [1, HUGE, 1, 7, 1, 257, 1],
}
# every pair of option values in four cases (an orthogonal array), per optimizer
PAIRS = [(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)]
LARS_CASES = [
    {"momentum": (0.0, 0.9)[m], "weight_decay": (0.0, 0.01)[w], "maximize": bool(x)}
    for m, w, x in PAIRS
]
LAMB_CASES = [
    {
        "betas": ((0.9, 0.999), (0.3, 0.9))[b],  # beta1 0.3: torch.lerp's other branch
        "weight_decay": (0.0, 0.01)[w],
        "maximize": bool(x),
    }
    for b, w, x in PAIRS
]
# (tensor sizes, adapt mask): every second tensor without trust ratio and decay
ARENAS = [(s, False) for s in LAYOUTS.values()] + [
    (LAYOUTS["odd"], True),
    (LAYOUTS["large"], True),
]


def _layout(sizes, masked):
    """``(segment_ids, starts, adapt)`` on the host, as ``segment_layout`` makes them;
    ``masked``: every second tensor without trust ratio and decay."""
    starts = np.cumsum([0] + sizes[:-1]) if sizes else []
    starts = np.asarray(starts, dtype=np.intp)
    ids = np.repeat(np.arange(len(sizes), dtype=np.intp), sizes)
    adapt = np.arange(len(sizes)) % 2 == 0 if masked else None
    return ids, starts, adapt


def _arrays(sizes, dtype, n_state, seed=0):
    """Params (the last but one tensor all zero), three steps of gradients (the last
    tensor's always zero) and zero state."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    param = rng.standard_normal(n).astype(dtype)
    grads = rng.standard_normal((3, n)).astype(dtype)
    if len(sizes) > 2:
        ends = np.cumsum(sizes)
        param[ends[-3] : ends[-2]] = 0
        grads[:, ends[-2] :] = 0
    return param, grads, [np.zeros(n, dtype) for _ in range(n_state)]


def _lars_step(backend, arrays, layout, t, case):
    param, grad, buf = arrays
    backend.lars_update_(
        *(param, grad, buf if case["momentum"] else None, *layout),
        weight_decay=case["weight_decay"],
        trust_coefficient=0.02,
        eps=1e-8,
        lr=0.1,
        momentum=case["momentum"],
        maximize=case["maximize"],
        first_step=t == 1,
    )


def _lamb_step(backend, arrays, layout, t, case):
    beta1, beta2 = case["betas"]
    backend.lamb_update_(
        *arrays,
        *layout,
        lr=1e-2,
        beta1=beta1,
        beta2=beta2,
        eps=1e-6,
        weight_decay=case["weight_decay"],
        maximize=case["maximize"],
        bias_correction1=1 - beta1**t,
        bias_correction2=1 - beta2**t,
    )


def _run(backend, step, case, sizes, dtype, masked, n_state):
    """Three steps on ``backend``; returns the arrays after them, on the host."""
    param, grads, state = _arrays(sizes, dtype, n_state)
    ids, starts, adapt = _layout(sizes, masked)
    adapt = None if adapt is None else adapt.astype(dtype)
    arrays = [backend.asarray(a) for a in (param, grads[0], *state)]
    layout = [None if a is None else backend.asarray(a) for a in (ids, starts, adapt)]
    for t in (1, 2, 3):
        arrays[1] = backend.asarray(grads[t - 1])
        step(backend, arrays, layout, t, case)
    return [backend.to_numpy(a) for a in arrays]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "sizes, masked", ARENAS, ids=[f"{len(s)}-{sum(s)}-{m}" for s, m in ARENAS]
)
@pytest.mark.parametrize(
    "name, case",
    [("lars", c) for c in LARS_CASES] + [("lamb", c) for c in LAMB_CASES],
    ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) if isinstance(v, dict) else v,
)
def test_large_batch_updates_match_the_reference(
    kernel_backend, reference, name, case, sizes, masked, dtype
):
    step, n_state = (_lars_step, 1) if name == "lars" else (_lamb_step, 2)
    starts = kernel_backend.asarray(_layout(sizes, False)[1])  # the kernels run:
    assert kernel_backend._segment_table(np.zeros(sum(sizes)), starts, whole=True)
    ours = _run(kernel_backend, step, case, sizes, dtype, masked, n_state)
    ref = _run(reference, step, case, sizes, dtype, masked, n_state)
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype
        assert_close(a, b.astype(np.float64), dtype)


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_large_batch_updates_of_an_empty_arena(kernel_backend, name):
    step, n_state = (_lars_step, 1) if name == "lars" else (_lamb_step, 2)
    case = (LARS_CASES if name == "lars" else LAMB_CASES)[-1]
    ours = _run(kernel_backend, step, case, [], np.float32, False, n_state)
    assert all(a.shape == (0,) for a in ours)


def _flat(backend, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return backend.asarray(rng.standard_normal(n).astype(dtype) * 3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "starts",
    [[0], [0, 1, 2, HUGE, HUGE + 1, HUGE + 2], [5, 9, 2000], [0, 0, 7], [0, 9, 4], []],
    ids=["one", "large", "offset", "repeated", "decreasing", "none"],
)
def test_segment_norms(kernel_backend, reference, starts, dtype):
    """Against float64; starts the kernels do not take (repeated, decreasing) give
    what the reference gives."""
    flat = _flat(kernel_backend, HUGE + 9, dtype)
    starts = np.array(starts, dtype=np.intp)
    host = kernel_backend.to_numpy(flat)
    norms = kernel_backend.segment_norms(flat, kernel_backend.asarray(starts))
    want = reference.segment_norms(host.astype(np.float64), starts)
    assert norms.dtype == flat.dtype and norms.shape == starts.shape
    assert_close(kernel_backend.to_numpy(norms), want, dtype, REDUCTION_TOL)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [0, 1, 37, HUGE + 7])
def test_global_norm(kernel_backend, reference, n, dtype):
    flat = _flat(kernel_backend, n, dtype)
    norm = kernel_backend.global_norm(flat)
    want = reference.global_norm(kernel_backend.to_numpy(flat).astype(np.float64))
    assert norm.shape == () and norm.dtype == flat.dtype
    assert_close(kernel_backend.to_numpy(norm), want, dtype, REDUCTION_TOL)


def test_reductions_are_bitwise_deterministic(kernel_backend):
    flat = _flat(kernel_backend, HUGE + 7, np.float32)
    starts = kernel_backend.asarray(np.array([0, 1, 40, HUGE], np.intp))
    for op in (
        lambda: kernel_backend.global_norm(flat),
        lambda: kernel_backend.segment_norms(flat, starts),
        lambda: kernel_backend.step_is_finite(np.float32(0.5), flat),
    ):
        first, second = (kernel_backend.to_numpy(op()) for _ in range(2))
        np.testing.assert_array_equal(first, second)
    runs = [
        _run(
            kernel_backend, _lamb_step, LAMB_CASES[3], LAYOUTS["large"], "float32", 1, 2
        )
        for _ in range(2)
    ]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [0, 1, 37, HUGE + 7])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_by_norm(kernel_backend, reference, n, max_norm, dtype):
    host = kernel_backend.to_numpy(_flat(kernel_backend, n, dtype))
    ours, ref = kernel_backend.asarray(host.copy()), host.copy()
    norm = kernel_backend.clip_by_norm_(ours, max_norm)
    want = reference.clip_by_norm_(ref, max_norm)
    assert norm.shape == () and norm.dtype == np.dtype(dtype)
    assert_close(kernel_backend.to_numpy(norm), want, dtype, REDUCTION_TOL)
    ours = kernel_backend.to_numpy(ours)
    assert_close(ours, ref.astype(np.float64), dtype)
    assert np.linalg.norm(ours.astype(np.float64)) <= max_norm * (1 + 1e-6)
    if max_norm > 1e5:  # below the limit: untouched
        np.testing.assert_array_equal(ours, host)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [0, 1, 37, HUGE + 7])
def test_clip_by_value(kernel_backend, reference, n, dtype):
    host = kernel_backend.to_numpy(_flat(kernel_backend, n, dtype))
    if n > 3:
        host[:3] = [np.nan, np.inf, -np.inf]
    ours, ref = kernel_backend.asarray(host.copy()), host.copy()
    kernel_backend.clip_by_value_(ours, 0.75)
    reference.clip_by_value_(ref, 0.75)
    np.testing.assert_array_equal(kernel_backend.to_numpy(ours), ref)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1, 37, HUGE + 7])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_step_is_finite(kernel_backend, reference, n, bad, dtype):
    grads = _flat(kernel_backend, n, dtype)
    for loss in (0.25, np.float32(0.25), kernel_backend.asarray(np.array(0.25, dtype))):
        assert bool(kernel_backend.step_is_finite(loss, grads))
    assert not bool(kernel_backend.step_is_finite(bad, grads))
    host = kernel_backend.to_numpy(grads)
    for where in sorted({0, n // 2, n - 1}):
        broken = host.copy()
        broken[where] = bad
        ok = kernel_backend.step_is_finite(0.25, kernel_backend.asarray(broken))
        assert ok.dtype == np.bool_ and ok.shape == ()
        assert not bool(ok) and not bool(reference.step_is_finite(0.25, broken))


def test_step_is_finite_edges(kernel_backend):
    empty = kernel_backend.asarray(np.zeros(0, np.float32))
    assert bool(kernel_backend.step_is_finite(1.0, empty))
    assert not bool(kernel_backend.step_is_finite(np.nan, empty))
    huge = kernel_backend.asarray(np.full(4, 3e38, np.float32))  # sum beyond float32
    assert not bool(kernel_backend.step_is_finite(0.0, huge))
    # finite gradients whose squares overflow float32 (Adam's second moment would)
    square = kernel_backend.asarray(np.array([0.0, 2e19, -1.0], np.float32))
    assert not bool(kernel_backend.step_is_finite(0.0, square))
    fine = kernel_backend.asarray(np.array([0.0, 1e19, -1.0], np.float32))
    assert bool(kernel_backend.step_is_finite(0.0, fine))
    wide = kernel_backend.asarray(np.array([2e19, 1e150], np.float64))
    assert bool(kernel_backend.step_is_finite(0.0, wide))


def test_bad_input_raises_as_the_reference(kernel_backend, reference):
    """Same exception class; a bad shape or dtype writes nothing (an absent state
    buffer that the options need fails as the reference's code does, after it)."""
    ids, starts, _ = _layout([2, 4], False)
    hyper = {"weight_decay": 0.0, "trust_coefficient": 1e-3, "eps": 0.0, "lr": 1.0}
    hyper.update(momentum=0.9, maximize=False)
    sgd = {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "nesterov": False}
    sgd.update(weight_decay=0.0, maximize=False, first_step=True)
    rms = {"lr": 0.1, "alpha": 0.9, "eps": 1e-8, "weight_decay": 0.0}
    rms.update(momentum=0.0, centered=True, maximize=False)
    lars, lamb, lamb_hyper = "lars_update_", "lamb_update_", {"lr": 1e-3}
    bad_calls = [
        (lars, (5, 6, 6), (ids, starts, None), hyper),  # short param
        (lars, (6, 6, 6), (ids * 1.0, starts, None), hyper),  # float segment ids
        (lars, (6, 6, 6), (ids, starts, np.ones(2)), hyper),  # float64 adapt
        (lars, (6, 6, 6), (ids, starts, None), hyper),  # first_step missing
        (lars, (6, 6, None), (ids, starts, None), {**hyper, "first_step": True}),
        (lamb, (6, 6, 6, 5), (ids, starts, None), lamb_hyper),  # short exp_avg_sq
        (lamb, (6, 6, 6, 6), (ids, starts, None), lamb_hyper),  # betas missing
        ("sgd_update_", (6, 6, None), (), sgd),  # momentum without its buffer
        ("rmsprop_update_", (6, 6, 6, None, None), (), rms),  # centered, no grad_avg
    ]
    for op, sizes, layout, kw in bad_calls:
        errors, after = [], []
        for backend in (reference, kernel_backend):
            arrays = [
                _on(backend)(None if n is None else np.ones(n, np.float32))
                for n in sizes
            ]
            with pytest.raises((TypeError, ValueError)) as info:
                getattr(backend, op)(*arrays, *map(_on(backend), layout), **kw)
            errors.append(type(info.value))
            after.append([backend.to_numpy(a) for a in arrays if a is not None])
        assert errors[0] is errors[1], op
        for ours, theirs in zip(after[1], after[0]):
            np.testing.assert_array_equal(ours, theirs)
            if errors[0] is ValueError:
                assert (ours == 1).all()


def _on(backend):
    return lambda a: None if a is None else backend.asarray(a)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_model_with_masked_trust_ratio_matches_the_reference(
    kernel_backend, reference, name, dtype
):
    """Five steps of a small model, biases without trust ratio (``exclude_1d``),
    value clipping: losses and weights within the multi-step tolerance."""
    rtol, atol = {"float32": (1e-3, 1e-4), "float64": (1e-6, 1e-6)}[dtype]
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5, 16, 6)), rng.standard_normal((5, 16, 2))
    results = []
    for backend in (reference, kernel_backend):
        model = gpunn.Sequential(
            [Dense(9, activation="tanh"), Dense(2)],
            input_dim=6,
            dtype=dtype,
            backend=backend,
            seed=1,
        )
        opt = gpunn.optim.get(name, exclude_1d=True, weight_decay=0.01, clip_value=0.5)
        model.compile("mse", opt, metrics=[])
        losses = [float(model.train_step(x, t)) for x, t in zip(X, y)]
        results.append((losses, model.get_weights()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=rtol, atol=atol)
    for ours, theirs in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)
