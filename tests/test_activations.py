"""Activation ops: each against a float64 reference written here (math module,
complex-step derivatives) on every backend and dtype, extremes, PyTorch's conventions
at the kinks (committed golden values, through the layers), erf against math.erf."""

import cmath
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close

from gpunn import layers
from gpunn.arena import ParameterArena

GOLDEN = json.loads(
    (Path(__file__).parent / "data" / "activations_golden.json").read_text()
)
EXTREMES = [-1e4, -88.0, -30.0, 0.0, 30.0, 88.0, 1e4]


def vec(f):
    return np.vectorize(f, otypes=[float])


def csig(z):
    """Sigmoid of a real or complex number without overflow."""
    if z.real >= 0:
        return 1 / (1 + cmath.exp(-z))
    return cmath.exp(z) / (1 + cmath.exp(z))


def complex_step(f, h=1e-30):
    """``f'(x) = Im f(x + ih) / h``: exact to rounding, no derivative formula."""
    return lambda v: f(complex(v, h)).imag / h


def gelu_tanh(z):
    return 0.5 * z * (1 + cmath.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))


def leaky(slope):
    return (lambda v: v if v > 0 else slope * v), (lambda v: 1.0 if v > 0 else slope)


def elu(alpha):
    return (
        lambda v: v if v > 0 else alpha * math.expm1(v),
        lambda v: 1.0 if v > 0 else alpha * math.exp(v),
    )


def gelu(v):
    """``x * Phi(x)``, with ``Phi`` through erfc: no cancellation for x < 0."""
    return v * 0.5 * math.erfc(-v / math.sqrt(2))


def dgelu(v):
    """``Phi(x) + x * phi(x)``."""
    return 0.5 * math.erfc(-v / math.sqrt(2)) + v * math.exp(-v * v / 2) / math.sqrt(
        2 * math.pi
    )


# (op, options, what its backprop takes, f, f')
CASES = [
    ("leaky_relu", {}, "y", *leaky(0.01)),
    ("leaky_relu", {"negative_slope": 0.2}, "y", *leaky(0.2)),
    ("elu", {}, "y", *elu(1.0)),
    ("elu", {"alpha": 0.5}, "y", *elu(0.5)),
    ("silu", {}, "x", lambda v: v * csig(v).real, complex_step(lambda z: z * csig(z))),
    ("gelu", {}, "x", gelu, dgelu),
    (
        "gelu",
        {"approximate": "tanh"},
        "x",
        lambda v: gelu_tanh(v).real,
        complex_step(gelu_tanh),
    ),
]
IDS = [f"{c[0]}-{c[1]}" for c in CASES]


def run_op(backend, case, x, dy):
    op, options, saves, _, _ = case
    xd = backend.asarray(x)
    y = getattr(backend, op)(xd, **options)
    dx = getattr(backend, "backprop_" + op)(
        backend.asarray(dy), xd if saves == "x" else y, **options
    )
    return backend.to_numpy(y), backend.to_numpy(dx), y.dtype, dx.dtype


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 13)])
def test_op_matches_float64_reference(backend, dtype, rng, case, shape):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y, dx, y_dtype, dx_dtype = run_op(backend, case, x, dy)
    assert y_dtype == dtype and dx_dtype == dtype and y.shape == shape
    x64 = x.astype(np.float64)
    assert_close(y, vec(case[3])(x64), dtype)
    assert_close(dx, dy * vec(case[4])(x64), dtype, REDUCTION_TOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_op_extremes_are_finite(backend, dtype, case):
    x = np.array([EXTREMES], dtype)
    y, dx, _, _ = run_op(backend, case, x, np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert_close(y, vec(case[3])(x.astype(np.float64)), dtype)
    assert_close(dx, vec(case[4])(x.astype(np.float64)), dtype, REDUCTION_TOL)


@pytest.mark.parametrize(
    "op, options, slope",
    [
        ("relu", {}, 0.0),
        ("leaky_relu", {}, 0.01),
        ("leaky_relu", {"negative_slope": 0.3}, 0.3),
        ("elu", {"alpha": 0.7}, 0.7),
    ],
)
def test_subgradient_at_zero_is_torchs(backend, dtype, op, options, slope):
    """The derivative at a kink is PyTorch's: ReLU 0, LeakyReLU its slope, ELU alpha."""
    zeros = backend.asarray(np.zeros((2, 3), dtype))
    y = getattr(backend, op)(zeros, **options)
    dx = getattr(backend, "backprop_" + op)(
        backend.asarray(np.ones((2, 3), dtype)), y, **options
    )
    np.testing.assert_array_equal(backend.to_numpy(dx), np.full((2, 3), slope, dtype))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_softmax_with_temperature(backend, dtype, rng, temperature):
    x = (rng.standard_normal((9, 11)) * 5).astype(dtype)
    x[0, :3] = [1e4, -1e4, 88.0]
    dy = rng.standard_normal((9, 11)).astype(dtype)
    y = backend.softmax(backend.asarray(x), temperature)
    z = x.astype(np.float64) / temperature
    e = np.exp(z - z.max(1, keepdims=True))
    ref = e / e.sum(1, keepdims=True)
    assert y.dtype == dtype
    assert_close(backend.to_numpy(y), ref, dtype, REDUCTION_TOL)
    dx = backend.backprop_softmax(backend.asarray(dy), y, temperature)
    jac = np.stack([np.diag(r) - np.outer(r, r) for r in ref]) / temperature
    assert dx.dtype == dtype
    want = np.einsum("nij,nj->ni", jac, dy.astype(np.float64))
    assert_close(backend.to_numpy(dx), want, dtype, REDUCTION_TOL)


# ------------------------------------------------------------------ erf
def test_erf_is_within_a_few_ulp_of_math_erf_in_float64(backend):
    special = [
        0.0,
        1e-300,
        5e-324,
        1e-10,
        0.46875,
        4.0,
        5.9,
        6.0,
        10.0,
        27.0,
        1e4,
        1e300,
    ]
    x = np.concatenate([np.linspace(-7, 7, 20001), special, np.negative(special)])
    x = np.concatenate([x, np.nextafter([0.46875, 4.0], [1, 5]), [np.inf, -np.inf]])
    got = backend.to_numpy(backend.erf(backend.asarray(x)))
    ref = np.array([math.erf(v) for v in x])
    assert got.dtype == np.float64
    ulps = np.abs(got - ref) / np.spacing(np.abs(ref))
    assert ulps.max() <= 5, (ulps.max(), x[ulps.argmax()])
    np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))  # erf(-0) = -0


def test_erf_float32_and_nan(backend, rng):
    x = np.concatenate([rng.standard_normal(2000) * 3, [0.0, 4.0, 30.0, -88.0]])
    x = x.astype(np.float32)
    got = backend.erf(backend.asarray(x))
    assert got.dtype == np.float32
    ref = np.array([math.erf(float(v)) for v in x])
    assert_close(backend.to_numpy(got), ref, np.float32)
    nan = backend.to_numpy(backend.erf(backend.asarray(np.array([np.nan]))))
    assert np.isnan(nan).all()


# ------------------------------------------------------------------ torch's values
def standalone(layer, backend, dtype, n_in):
    """Builds ``layer`` alone in its own arena on ``backend``."""
    specs = [("l", s) for s in layer.build(n_in, np.random.default_rng(0))]
    arena = ParameterArena(backend, dtype, specs)
    layer.bind(backend, arena.views("l", arena.params), arena.views("l", arena.grads))
    return layer


GOLDEN_TOL = {np.dtype("float32"): (1e-5, 1e-5), np.dtype("float64"): (1e-10, 1e-12)}


@pytest.mark.parametrize(
    "case", GOLDEN["cases"], ids=lambda c: f"{c['layer']}-{c['kwargs']}"
)
def test_layers_match_torch_golden_values(backend, dtype, case):
    """PyTorch's float64 outputs and gradients (tests/data/make_activations_golden.py),
    kinks and extremes included."""
    x, dy = np.array(GOLDEN["x"], dtype), np.array(GOLDEN["dy"], dtype)
    layer = getattr(layers, case["layer"])(**case["kwargs"])
    standalone(layer, backend, dtype, x.shape[1])
    if case["weight"] is not None:
        layer.params["weight"][...] = backend.asarray(np.array(case["weight"], dtype))
    y = layer.forward(backend.asarray(x), training=True)
    dx = layer.backward(backend.asarray(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(backend.to_numpy(y), case["y"], dtype, GOLDEN_TOL)
    assert_close(backend.to_numpy(dx), case["dx"], dtype, GOLDEN_TOL)
    for grad in layer.grads.values():  # PReLU's slopes, a trainable Swish's beta
        assert_close(backend.to_numpy(grad), case["dparam"], dtype, GOLDEN_TOL)
