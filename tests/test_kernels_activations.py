"""The activation kernels match the reference ops: forward and derivative, every
activation and option, sizes 0, 1, odd and larger than one grid, float32 and
float64 (within QUALITY.md's elementwise tolerances) and float16 (against the float64
reference, within its fp16 tolerance), extremes and kinks included."""

import numpy as np
import pytest
from conftest import ELEMENTWISE_TOL

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


@pytest.mark.parametrize("op, saves, options", CASES, ids=IDS)
def test_float16_computes_in_float(kernel_backend, reference, op, saves, options):
    x, dy = _inputs((9, 31), np.float16, seed=1)
    x = np.clip(x, -8, 8)  # float16 range: compare where the reference is finite
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
    for ours, ref in ((y, y_ref), (dx, dx_ref)):
        ours = kernel_backend.to_numpy(ours)
        assert ours.dtype == np.float16
        np.testing.assert_allclose(ours.astype(np.float64), ref, rtol=1e-2, atol=1e-2)


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
