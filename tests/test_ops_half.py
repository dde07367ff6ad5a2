"""Every layer op on float16 and bfloat16 arrays (mixed precision), on every backend:
the output keeps the 16-bit dtype, equals the op on the float32 values rounded once,
and is within the 16-bit tolerances of a float64 reference; gradients written into
the float32 arena stay float32."""

import numpy as np
import pytest

from gpunn.backends.halves import half_dtype
from gpunn.precision import bfloat16

pytest.importorskip("ml_dtypes")

# (rtol, atol) of the README's 16-bit columns: elementwise ops, and ops that reduce
HALF_TOL = {
    "float16": {"elementwise": (1e-3, 1e-3), "reduction": (1e-2, 1e-3)},
    "bfloat16": {"elementwise": (8e-3, 8e-3), "reduction": (3e-2, 1e-2)},
}
HALVES = ["float16", "bfloat16"]


@pytest.fixture(params=HALVES)
def half(request):
    return np.dtype(np.float16) if request.param == "float16" else bfloat16()


def _close(actual, expected, half, kind="elementwise"):
    rtol, atol = HALF_TOL[half.name][kind]
    np.testing.assert_allclose(
        np.asarray(actual).astype(np.float64), expected, rtol=rtol, atol=atol
    )


def _rounded(rng, shape, half, scale=2.0):
    """A float64 array whose values are exactly representable in ``half``."""
    return (rng.standard_normal(shape) * scale).astype(half).astype(np.float64)


def _run(backend, op, half, *args, **kwargs):
    dev = [
        backend.asarray(a.astype(half)) if isinstance(a, np.ndarray) else a
        for a in args
    ]
    return getattr(backend, op)(*dev, **kwargs)


ELEMENTWISE = {
    # op: (float64 reference from x, options)
    "relu": (lambda x: np.maximum(x, 0), {}),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.2 * x), {"negative_slope": 0.2}),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))), {}),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), {}),
    "tanh": (np.tanh, {}),
    "silu": (lambda x: x / (1 + np.exp(-x)), {}),
    "gelu": (None, {}),
}


@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
def test_activations_and_their_backprop(backend, rng, half, op):
    """Forward: the float32 result rounded once (bit for bit) and close to float64.
    Backward from what the layer saves (the input for silu/gelu, else the output)."""
    ref, host = _reference(), backend.to_numpy
    x = _rounded(rng, (9, 17), half)
    dy = _rounded(rng, (9, 17), half, 1.0)
    formula, options = ELEMENTWISE[op]
    y = _run(backend, op, half, x, **options)
    assert y.dtype == half and y.shape == x.shape
    y64 = getattr(ref, op)(x, **options)
    if formula is not None:  # the float64 reference is the formula
        np.testing.assert_allclose(y64, formula(x), rtol=1e-12, atol=1e-12)
    _close(host(y), y64, half)
    once = getattr(ref, op)(x.astype(np.float32), **options).astype(half)
    np.testing.assert_array_equal(host(y).astype(np.float32), once.astype(np.float32))
    from_input = op in ("silu", "gelu")
    saved = backend.asarray(x.astype(half)) if from_input else y
    dx = getattr(backend, "backprop_" + op)(
        backend.asarray(dy.astype(half)), saved, **options
    )
    assert dx.dtype == half
    saved64 = x if from_input else host(y).astype(np.float64)
    _close(host(dx), getattr(ref, "backprop_" + op)(dy, saved64, **options), half)


def _reference():
    from gpunn.backends import get_backend

    return get_backend("cpu")


def test_dense_accumulates_in_float32_and_writes_float32_gradients(backend, rng, half):
    x, w, b = (_rounded(rng, s, half, 0.5) for s in [(33, 40), (40, 7), (7,)])
    dy = _rounded(rng, (33, 7), half, 1.0)
    for activation in ("identity", "relu", "gelu"):
        y, saved = _run(backend, "dense_activation", half, x, w, b, activation, {})
        assert y.dtype == half
        ref_y, _ = _reference().dense_activation(x, w, b, activation, {})
        _close(backend.to_numpy(y), ref_y, half, "reduction")
        dw = backend.zeros(w.shape, np.float32)
        db = backend.zeros(b.shape, np.float32)
        dx = backend.backprop_dense_activation_(
            *(backend.asarray(a.astype(half)) for a in (x, w, dy)),
            saved,
            dw,
            db,
            activation,
            {},
        )
        assert dx.dtype == half and dw.dtype == db.dtype == np.float32
        ref_saved = (
            None if saved is None else backend.to_numpy(saved).astype(np.float64)
        )
        rdw, rdb = np.zeros(w.shape), np.zeros(b.shape)
        rdx = _reference().backprop_dense_activation_(
            x, w, dy, ref_saved, rdw, rdb, activation, {}
        )
        _close(backend.to_numpy(dw), rdw, half, "reduction")
        _close(backend.to_numpy(db), rdb, half, "reduction")
        _close(backend.to_numpy(dx), rdx, half, "reduction")


def test_dense_refuses_half_gradients_and_mixed_halves(backend, rng, half):
    x, w = (
        backend.asarray(_rounded(rng, s, half).astype(half)) for s in [(4, 3), (3, 2)]
    )
    dy = backend.asarray(_rounded(rng, (4, 2), half).astype(half))
    with pytest.raises(ValueError, match="dw must have dtype float32"):
        backend.backprop_dense_activation_(
            x, w, dy, None, backend.zeros((3, 2), half), None, "identity", {}
        )
    other = np.float16 if half != np.float16 else bfloat16()
    with pytest.raises(ValueError, match="mix 16-bit"):
        backend.dense_activation(x, w.astype(other), None, "identity", {})


def test_batch_norm_statistics_in_float32(backend, rng, half):
    x = (_rounded(rng, (32, 6), half, 3.0) + 5).astype(half).astype(np.float64)
    gamma, beta = (
        rng.uniform(0.5, 2, 6).astype(np.float32),
        rng.standard_normal(6).astype(np.float32),
    )
    mean, var = np.zeros(6, np.float32), np.ones(6, np.float32)
    dev = [backend.asarray(a) for a in (gamma, beta, mean, var)]
    y, x_hat, inv_std = backend.batch_norm_train_(
        backend.asarray(x.astype(half)), *dev, 0.1, 1e-5
    )
    assert y.dtype == half and x_hat.dtype == inv_std.dtype == np.float32
    ref = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) * gamma + beta
    _close(backend.to_numpy(y), ref, half, "reduction")
    running = backend.to_numpy(dev[2])
    assert running.dtype == np.float32
    np.testing.assert_allclose(running, 0.1 * x.mean(0), rtol=1e-5)
    dy = _rounded(rng, (32, 6), half)
    dgamma, dbeta = backend.zeros(6, np.float32), backend.zeros(6, np.float32)
    dx = backend.backprop_batch_norm_(
        backend.asarray(dy.astype(half)), x_hat, inv_std, dev[0], dgamma, dbeta
    )
    assert dx.dtype == half and dgamma.dtype == np.float32
    _close(backend.to_numpy(dbeta), dy.sum(0), half, "reduction")
    y_eval = backend.batch_norm_eval(backend.asarray(x.astype(half)), *dev, 1e-5)
    assert y_eval.dtype == half


def test_dropout_keeps_the_dtype_and_the_mask(backend, half):
    from gpunn.backends.philox import CounterRNG

    x = np.linspace(-3, 3, 200).reshape(10, 20).astype(half).astype(np.float64)
    y, mask = _run(backend, "dropout", half, x, 0.25, CounterRNG(7))
    y32, _mask32 = backend.dropout(
        backend.asarray(x.astype(np.float32)), 0.25, CounterRNG(7)
    )
    assert y.dtype == half
    host = backend.to_numpy
    np.testing.assert_array_equal(
        host(y).astype(np.float32), host(y32).astype(half).astype(np.float32)
    )
    dx = backend.backprop_dropout(backend.asarray(x.astype(half)), mask)
    assert dx.dtype == half


def test_half_dtype_finds_one_16_bit_type():
    assert half_dtype([np.zeros(2, np.float32)]) is None
    assert half_dtype([np.zeros(2, np.float16), np.zeros(2, np.float32)]) == np.float16
    with pytest.raises(ValueError, match="mix 16-bit"):
        half_dtype([np.zeros(2, np.float16), np.zeros(2, bfloat16())])


def test_parametric_activations_with_float32_parameters(backend, rng, half):
    """PReLU and Swish in mixed precision: 16-bit data, float32 parameters and
    parameter gradients (the arena)."""
    x = _rounded(rng, (12, 5), half)
    dy = _rounded(rng, (12, 5), half, 1.0)
    slope = rng.uniform(0.1, 0.5, 5).astype(np.float32)
    ref = _reference()
    kx, kdy, kslope = (
        backend.asarray(a) for a in (x.astype(half), dy.astype(half), slope)
    )
    y = backend.prelu(kx, kslope)
    assert y.dtype == half
    _close(backend.to_numpy(y), ref.prelu(x, slope.astype(np.float64)), half)
    dslope = backend.zeros(5, np.float32)
    dx = backend.backprop_prelu_(kdy, kx, kslope, dslope)
    assert dx.dtype == half and dslope.dtype == np.float32
    want = np.zeros(5)
    ref_dx = ref.backprop_prelu_(dy, x, slope.astype(np.float64), want)
    _close(backend.to_numpy(dx), ref_dx, half)
    _close(backend.to_numpy(dslope), want, half, "reduction")
    beta = backend.asarray(np.array([1.5], np.float32))
    dbeta = backend.zeros(1, np.float32)
    y = backend.swish(kx, beta)
    dx = backend.backprop_swish_(kdy, kx, beta, dbeta)
    assert y.dtype == dx.dtype == half and dbeta.dtype == np.float32
    want = np.zeros(1)
    _close(backend.to_numpy(y), ref.swish(x, 1.5), half)
    _close(backend.to_numpy(dx), ref.backprop_swish_(dy, x, 1.5, want), half)
    _close(backend.to_numpy(dbeta), want, half, "reduction")


def test_noise_and_standardize_keep_the_dtype(backend, rng, half):
    x = backend.asarray(_rounded(rng, (6, 4), half).astype(half))
    y = backend.gaussian_noise(x, 0.1, backend.generator(3))
    assert y.dtype == half and y.shape == (6, 4)
    mean = backend.asarray(np.zeros(4, np.float32))
    inv_std = backend.asarray(np.full(4, 2.0, np.float32))
    z = backend.standardize(x, mean, inv_std)
    assert z.dtype == half
    np.testing.assert_array_equal(
        backend.to_numpy(z).astype(np.float32),
        (backend.to_numpy(x).astype(np.float32) * 2).astype(half).astype(np.float32),
    )
