"""The activation kernels match the reference ops: forward and derivative, every
activation and option, sizes 0, 1, odd and larger than one grid, float32 and
float64 (within the README's elementwise tolerances) and float16 and bfloat16 (against
the float64 reference, within their 16-bit tolerances; parameters and gradients
float32, as in mixed precision), extremes and kinks included. Swish (beta a
float or a device array, with its dbeta) and PReLU (one slope or one per unit, with
the slope gradient); Dense fused with its activation against the separate ops; the
reductions bit for bit deterministic; bad input raising the reference's exception."""

import numpy as np
import pytest
from conftest import ELEMENTWISE_TOL, REDUCTION_TOL
from test_activations import standalone

from gpunn import layers
from gpunn.backends import get_backend
from gpunn.backends.ops_fused import fused_op
from gpunn.precision import bfloat16

CASES = [
    ("relu", "y", {}),
    ("leaky_relu", "y", {"negative_slope": 0.2}),
    ("elu", "y", {"alpha": 1.5}),
    ("sigmoid", "y", {}),
    ("tanh", "y", {}),
    ("silu", "x", {}),
    ("gelu", "x", {}),
    ("gelu", "x", {"approximate": "tanh"}),
]
IDS = [f"{op}{'-' + '-'.join(map(str, o.values())) if o else ''}" for op, _, o in CASES]
SIZES = [(0, 3), (1, 1), (7, 13), (5, 3 * 256 * 3 // 5 + 9)]
EXTREMES = np.array([0.0, -0.0, 1e-8, -1e-8, 30, -30, 88, -88, 1e4, -1e4])
HALVES = ["float16", "bfloat16"]
DTYPES = [*HALVES, "float32", "float64"]


def _dtype(name):
    """A dtype by name; bfloat16 from ml_dtypes (skipped without it)."""
    if name == "bfloat16":
        pytest.importorskip("ml_dtypes")
        return bfloat16()
    return np.dtype(name)


def _is_half(dtype) -> bool:
    return np.dtype(dtype).itemsize == 2


def _params(dtype):
    """Parameters and gradients live in the arena: float32 with 16-bit data."""
    return np.dtype(np.float32) if _is_half(dtype) else np.dtype(dtype)


def _inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    x.flat[: min(x.size, EXTREMES.size)] = EXTREMES[: x.size]
    return x.astype(dtype), rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op, saves, options", CASES, ids=IDS)
def test_forward_and_backward_match(
    kernel_backend, reference, op, saves, options, dtype, shape
):
    x, dy = _inputs(shape, dtype)
    refs = _reference(reference, op, saves, options, x, dy)
    exact = _reference(reference, op, saves, options, x.astype(float), dy.astype(float))
    kx, kdy = kernel_backend.asarray(x), kernel_backend.asarray(dy)
    y = getattr(kernel_backend, op)(kx, **options)
    dx = getattr(kernel_backend, "backprop_" + op)(
        kdy, y if saves == "y" else kx, **options
    )
    for ours, ref, truth in zip((y, dx), refs, exact):
        ours = kernel_backend.to_numpy(ours)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        assert np.all(np.isfinite(ours))
        # within QUALITY's elementwise tolerance of the reference, or, where the
        # float32 formula itself cancels (GELU's 1 + tanh far left), no further
        # from the float64 truth than twice the reference's own error
        rtol, atol = ELEMENTWISE_TOL[np.dtype(dtype)]
        slack = atol + rtol * np.abs(ref) + 2 * np.abs(ref - truth)
        assert np.all(np.abs(ours - truth) <= slack + np.abs(ref - truth))


def _reference(reference, op, saves, options, x, dy):
    """``(y, dx)`` of the reference op and its derivative."""
    with np.errstate(over="ignore"):  # the reference's exp(88) in float32
        y = getattr(reference, op)(x, **options)
        dx = getattr(reference, "backprop_" + op)(
            dy, y if saves == "y" else x, **options
        )
    return y, dx


@pytest.mark.parametrize("half", HALVES)
@pytest.mark.parametrize("op, saves, options", CASES, ids=IDS)
def test_16_bit_types_compute_in_float(
    kernel_backend, reference, op, saves, options, half
):
    half = _dtype(half)
    x, dy = _inputs((9, 31), half, seed=1)
    x = np.clip(x, -8, 8).astype(half)  # float16 range: the reference is finite
    y_ref = getattr(reference, op)(x.astype(np.float64), **options)
    saved = y_ref if saves == "y" else x.astype(np.float64)
    dx_ref = getattr(reference, "backprop_" + op)(
        dy.astype(np.float64), saved, **options
    )
    kx, kdy = kernel_backend.asarray(x), kernel_backend.asarray(dy)
    y = getattr(kernel_backend, op)(kx, **options)
    dx = getattr(kernel_backend, "backprop_" + op)(
        kdy, y if saves == "y" else kx, **options
    )
    rtol, atol = _tol(half)
    for ours, ref in ((y, y_ref), (dx, dx_ref)):
        ours = kernel_backend.to_numpy(ours)
        assert ours.dtype == half
        np.testing.assert_allclose(
            ours.astype(np.float64), ref, rtol=10 * rtol, atol=10 * atol
        )


def test_nan_propagates_like_the_reference(kernel_backend, reference):
    x = np.array([np.nan, 1.0, -1.0], np.float32)
    for op in ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "silu", "gelu"):
        ours = kernel_backend.to_numpy(
            getattr(kernel_backend, op)(kernel_backend.asarray(x))
        )
        np.testing.assert_array_equal(
            np.isnan(ours), np.isnan(getattr(reference, op)(x))
        )


def test_other_inputs_run_the_reference(kernel_backend, reference):
    x = np.arange(12.0).reshape(3, 4)[:, ::2]  # not contiguous
    np.testing.assert_array_equal(
        kernel_backend.to_numpy(kernel_backend.relu(kernel_backend.asarray(x))),
        reference.relu(x),
    )
    with pytest.raises(ValueError, match="approximate"):
        kernel_backend.gelu(kernel_backend.asarray(np.ones(3)), approximate="bad")
    with pytest.raises(ValueError, match="approximate"):
        reference.gelu(np.ones(3), approximate="bad")


# ---------------------------------------------------------------- swish, prelu
# the README's 16-bit columns, (rtol, atol)
HALF_TOL = {
    "float16": {"elementwise": (1e-3, 1e-3), "sum": (1e-2, 1e-3)},
    "bfloat16": {"elementwise": (8e-3, 8e-3), "sum": (3e-2, 1e-2)},
}


def _close_sum(ours, truth, scale, dtype, tol=None):
    """A reduction within QUALITY's tolerance of the float64 truth, the relative part
    taken of ``scale`` (the sum of the terms' magnitudes: a sum that cancels is only
    as exact as its largest terms)."""
    rtol, atol = tol or REDUCTION_TOL[np.dtype(dtype)]
    ours = np.asarray(ours, np.float64)
    assert np.all(np.abs(ours - truth) <= atol + rtol * scale), (ours, truth)


def _tol(dtype, kind="elementwise"):
    if _is_half(dtype):
        return HALF_TOL[np.dtype(dtype).name][kind]
    return (ELEMENTWISE_TOL if kind == "elementwise" else REDUCTION_TOL)[
        np.dtype(dtype)
    ]


def _swish_ref(x, dy, beta):
    """float64 ``y``, ``dx``, ``dbeta`` and the dbeta terms' magnitude."""
    with np.errstate(over="ignore"):  # exp(1e4): s = 0 as it should
        s = 1 / (1 + np.exp(-beta * x))
    t = x * s * (1 - s)
    terms = dy * x * t
    return x * s, dy * (s + beta * t), terms.sum(), np.abs(terms).sum()


@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [1.0, 1.7, "array"])
def test_swish_matches_the_reference(kernel_backend, dtype, shape, beta):
    dtype = _dtype(dtype)
    x, dy = _inputs(shape, dtype, seed=2)
    if _is_half(dtype):
        x = np.clip(x, -8, 8).astype(dtype)
    b = np.array([0.6], _params(dtype)) if beta == "array" else beta
    y_ref, dx_ref, dbeta_ref, scale = _swish_ref(
        *(a.astype(np.float64) for a in (x, dy)), np.float64(np.asarray(b).item())
    )
    kb = kernel_backend
    kx, kdy = kb.asarray(x), kb.asarray(dy)
    kbeta = kb.asarray(b) if beta == "array" else b
    dbeta = kb.zeros((1,), _params(dtype)) if beta == "array" else None
    y = kb.swish(kx, kbeta)
    dx = kb.backprop_swish_(kdy, kx, kbeta, dbeta)
    for ours, ref in ((y, y_ref), (dx, dx_ref)):
        ours = kb.to_numpy(ours)
        assert ours.dtype == dtype and ours.shape == shape
        rtol, atol = _tol(dtype)
        np.testing.assert_allclose(ours.astype(float), ref, rtol=rtol, atol=atol)
    if dbeta is not None:
        _close_sum(kb.to_numpy(dbeta), dbeta_ref, scale, dtype, _tol(dtype, "sum"))


PRELU_SIZES = [(0, 3), (1, 1), (7, 13), (200, 100)]


@pytest.mark.parametrize("shape", PRELU_SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_unit", [False, True], ids=["one", "per_unit"])
@pytest.mark.parametrize("need_dx", [True, False])
def test_prelu_matches_the_reference(kernel_backend, dtype, shape, per_unit, need_dx):
    dtype = _dtype(dtype)
    x, dy = _inputs(shape, dtype, seed=3)
    rng = np.random.default_rng(4)
    w = rng.uniform(-0.5, 1.5, shape[1] if per_unit else 1).astype(_params(dtype))
    x64, dy64, w64 = (a.astype(np.float64) for a in (x, dy, w))
    terms = dy64 * np.minimum(x64, 0)
    axis = 0 if per_unit else None
    kb = kernel_backend
    kx, kdy, kw = kb.asarray(x), kb.asarray(dy), kb.asarray(w)
    dw = kb.zeros(w.shape, _params(dtype))
    y = kb.prelu(kx, kw)
    dx = kb.backprop_prelu_(kdy, kx, kw, dw, need_dx=need_dx)
    want = [(y, np.where(x64 > 0, x64, x64 * w64))]
    want += [(dx, np.where(x64 > 0, dy64, dy64 * w64))] if need_dx else []
    assert need_dx or dx is None
    for ours, ref in want:
        ours = kb.to_numpy(ours)
        assert ours.dtype == dtype and ours.shape == shape
        rtol, atol = _tol(dtype)
        np.testing.assert_allclose(ours.astype(float), ref, rtol=rtol, atol=atol)
    _close_sum(
        kb.to_numpy(dw),
        np.atleast_1d(terms.sum(axis)),
        np.atleast_1d(np.abs(terms).sum(axis)),
        dtype,
        _tol(dtype, "sum"),
    )


# ---------------------------------------------------------------- Dense fused
FUSED = [
    ("identity", {}),
    ("linear", {}),
    ("relu", {}),
    ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {"alpha": 1.5}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("silu", {}),
    ("swish", {}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
]
FUSED_IDS = [
    f"{a}{'-' + '-'.join(map(str, o.values())) if o else ''}" for a, o in FUSED
]
DENSE_SIZES = [(0, 3, 5), (1, 1, 1), (7, 5, 13), (200, 4, 100)]  # batch, n_in, n_out


def _dense_inputs(shape, dtype, bias, seed=5):
    batch, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in))
    w = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
    b = rng.standard_normal(n_out) if bias else None
    dy = rng.standard_normal((batch, n_out))
    # no gradient where a float16 GEMM's error could move z across a kink
    dy[np.abs(x @ w + (0 if b is None else b)) < 0.02] = 0
    return [None if a is None else a.astype(dtype) for a in (x, w, b, dy)]


def _unfused(reference, activation, options, x, w, b, dy):
    """float64 ``(y, dx, dw, db)`` of the separate ops: Dense, then the activation."""
    op, saves = fused_op(activation)
    z = reference.dense_forward(x, w, b)
    y = getattr(reference, op)(z, **options)
    dz = getattr(reference, "backprop_" + op)(dy, z if saves == "x" else y, **options)
    dw, db = np.empty_like(w), np.empty(w.shape[1])
    dx = reference.dense_backward_(x, w, dz, dw, db)
    return y, dx, dw, db, (np.abs(dz).sum(0), np.abs(x).T @ np.abs(dz))


@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", DENSE_SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation, options", FUSED, ids=FUSED_IDS)
def test_fused_dense_matches_the_unfused_reference(
    kernel_backend, reference, activation, options, dtype, shape, bias, need_dx
):
    """16-bit data (mixed precision) with float32 weight and bias gradients."""
    dtype = _dtype(dtype)
    x, w, b, dy = _dense_inputs(shape, dtype, bias)
    exact = (None if a is None else a.astype(np.float64) for a in (x, w, b, dy))
    y_ref, dx_ref, dw_ref, db_ref, (scale, scale_w) = _unfused(
        reference, activation, options, *exact
    )
    kb = kernel_backend
    kx, kw, kdy = kb.asarray(x), kb.asarray(w), kb.asarray(dy)
    kbias = None if b is None else kb.asarray(b)
    grads = _params(dtype)
    dw, db = kb.zeros(w.shape, grads), kb.zeros(w.shape[1], grads) if bias else None
    y, saved = kb.dense_activation(kx, kw, kbias, activation, options)
    dx = kb.backprop_dense_activation_(
        kx, kw, kdy, saved, dw, db, activation, options, need_dx=need_dx
    )
    assert (dx is None) == (not need_dx)
    rtol, atol = _tol(dtype, "sum")
    if _is_half(dtype):  # the GEMM's 16-bit output is rounded, then the activation
        rtol, atol = (1e-2, 1e-2) if dtype == np.float16 else (4e-2, 4e-2)
    for ours, ref, want in (
        (y, y_ref, dtype),
        (dx, dx_ref, dtype),
        (dw, dw_ref, grads),
    ):
        if ours is not None:
            ours = kb.to_numpy(ours)
            assert ours.dtype == want and ours.shape == ref.shape
            if ref is dw_ref and _is_half(dtype):  # a sum over the batch: relative
                _close_sum(ours, ref, scale_w, dtype, _tol(dtype, "sum"))  # to |x||dz|
                continue
            np.testing.assert_allclose(ours.astype(float), ref, rtol=rtol, atol=atol)
    if bias:
        assert kb.to_numpy(db).dtype == grads
        _close_sum(kb.to_numpy(db), db_ref, scale, dtype, _tol(dtype, "sum"))


@pytest.mark.parametrize("activation, options", FUSED, ids=FUSED_IDS)
def test_fused_dense_saves_what_the_backward_needs(kernel_backend, activation, options):
    x, w, b, _ = _dense_inputs((6, 3, 4), np.float64, True)
    kb = kernel_backend
    y, saved = kb.dense_activation(
        kb.asarray(x), kb.asarray(w), kb.asarray(b), activation, options
    )
    saves = fused_op(activation)[1]
    if saves == "":
        assert saved is None
    elif saves == "y":
        assert saved is y
    else:
        np.testing.assert_allclose(kb.to_numpy(saved), x @ w + b, rtol=1e-12)


def test_reductions_are_deterministic(kernel_backend):
    """Two runs give the same bits: Dense's db, PReLU's slopes, Swish's dbeta."""
    kb = kernel_backend
    x, w, b, dy = (
        kb.asarray(a) for a in _dense_inputs((777, 3, 300), np.float32, True)
    )
    runs = []
    for _ in range(2):
        y, saved = kb.dense_activation(x, w, b, "gelu", {})
        grads = [kb.zeros(w.shape, np.float32), kb.zeros(300, np.float32)]
        kb.backprop_dense_activation_(x, w, dy, saved, *grads, "gelu", {})
        for shape in ((1,), (300,)):
            grads.append(kb.zeros(shape, np.float32))
            kb.backprop_prelu_(
                dy, y, kb.asarray(np.full(shape, 0.25, np.float32)), grads[-1]
            )
        grads.append(kb.zeros((1,), np.float32))
        kb.backprop_swish_(dy, y, kb.asarray(np.array([1.3], np.float32)), grads[-1])
        runs.append([kb.to_numpy(g).tobytes() for g in grads])
    assert runs[0] == runs[1]


def _bad_dense_cases(dtype=np.float32):
    x, w, b, dy = _dense_inputs((5, 3, 4), dtype, True)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    ok = {"x": x, "w": w, "b": b, "dy": dy, "dw": dw, "db": db, "act": "relu"}
    return [
        ({**ok, "w": np.zeros((4, 4), dtype)}, ValueError),
        ({**ok, "w": w.astype(np.float64)}, ValueError),
        ({**ok, "b": np.zeros(3, dtype)}, ValueError),
        ({**ok, "dw": np.zeros((3, 5), dtype)}, ValueError),
        ({**ok, "dw": dw.astype(np.float64)}, ValueError),
        ({**ok, "db": db.astype(np.float64)}, ValueError),
        ({**ok, "dy": dy[:, :3]}, ValueError),
        ({**ok, "act": "softmax"}, ValueError),
        ({**ok, "act": "leaky_relu", "options": {"slope": 0.1}}, TypeError),
    ]


@pytest.mark.parametrize("case, error", _bad_dense_cases(), ids=lambda c: "")
def test_bad_dense_input_raises_like_the_reference(
    kernel_backend, reference, case, error
):
    for backend in (reference, kernel_backend):
        a = {
            k: backend.asarray(v) if isinstance(v, np.ndarray) else v
            for k, v in case.items()
        }
        options, act = a.get("options", {}), a["act"]
        dw_before = backend.to_numpy(a["dw"]).copy()
        with pytest.raises(error):
            _, saved = backend.dense_activation(a["x"], a["w"], a["b"], act, options)
            backend.backprop_dense_activation_(
                a["x"], a["w"], a["dy"], saved, a["dw"], a["db"], act, options
            )
        np.testing.assert_array_equal(backend.to_numpy(a["dw"]), dw_before)


@pytest.mark.parametrize(
    "activation, options",
    FUSED + [("softmax", {"temperature": 2.0})],
    ids=FUSED_IDS + ["softmax"],
)
@pytest.mark.parametrize("needs_dx", [True, False])
def test_dense_with_its_activation_is_dense_then_the_activation(
    activation, options, needs_dx
):
    """On the CPU, bit for bit: outputs, dx and the parameter gradients."""
    cpu = get_backend("cpu")
    fused = standalone(
        layers.Dense(4, activation={"activation": activation, **options}),
        cpu,
        np.float64,
        3,
    )
    plain = standalone(layers.Dense(4), cpu, np.float64, 3)
    act = standalone(layers.Activation(activation, **options), cpu, np.float64, 4)
    rng = np.random.default_rng(6)
    for key in ("kernel", "bias"):
        fused.params[key][...] = plain.params[key] = rng.standard_normal(
            plain.params[key].shape
        )
    fused.needs_dx = plain.needs_dx = needs_dx
    x, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    y = fused.forward(x, training=True)
    np.testing.assert_array_equal(
        y, act.forward(plain.forward(x, training=True), training=True)
    )
    dx = fused.backward(dy)
    dx_plain = plain.backward(act.backward(dy))
    assert (dx is None) == (dx_plain is None) == (not needs_dx)
    if needs_dx:
        np.testing.assert_array_equal(dx, dx_plain)
    for key in ("kernel", "bias"):
        np.testing.assert_array_equal(fused.grads[key], plain.grads[key])


def test_the_ops_run_kernels_not_the_reference(kernel_backend, monkeypatch):
    kb, names = kernel_backend, []
    launch = kb.kernels.launch_grid
    monkeypatch.setattr(
        kb.kernels, "launch_grid", lambda f, n, *a: names.append(n) or launch(f, n, *a)
    )
    x, w, b, dy = (kb.asarray(a) for a in _dense_inputs((9, 3, 5), np.float32, True))
    grads = kb.zeros(w.shape, np.float32), kb.zeros(5, np.float32)
    for act in ("silu", "relu", "identity"):
        _, saved = kb.dense_activation(x, w, b, act, {})
        kb.backprop_dense_activation_(x, w, dy, saved, *grads, act, {})
    slope, beta = kb.asarray(np.ones(5, np.float32)), kb.zeros((1,), np.float32)
    kb.backprop_prelu_(dy, kb.prelu(dy, slope), slope, kb.zeros(5, np.float32))
    kb.backprop_swish_(dy, kb.swish(dy, 1.5), 1.5, beta)
    assert [n.split("<")[0] for n in names] == [
        *["dense_act_forward", "dense_act_backward", "column_sums"] * 3,
        *["prelu_forward", "prelu_backward", "column_sums"],
        *["swish_forward", "swish_backward", "sum_partials"],
    ]
