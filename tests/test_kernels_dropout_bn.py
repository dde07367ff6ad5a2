"""Counter-based dropout and the batch-norm kernels.

Dropout: NumPy's Philox is Philox4x64-10 with its counter incremented before use
(checked against a from-the-paper implementation), a CounterRNG draws exactly that
stream, and the kernel's mask and output equal the reference's bit for bit (float16,
float32, float64; sizes 0, 1, odd, larger than one grid; rates 0 and near 1), backward
uses the same mask, and a restored generator state redraws the same masks. Batch norm:
training forward, running statistics, eval and backward against the float64
reference (the README's reduction tolerances), every option, shapes down to (2, 1),
more rows than one grid and more features than one block, a 1e4 mean, and the same
bits run to run.
"""

import json

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close

import gpunn
from gpunn.backends.kernels import BLOCK
from gpunn.backends.philox import CounterRNG, DropoutMask, dropout_threshold
from gpunn.layers import Dropout
from gpunn.precision import bfloat16

M0, M1 = 0xD2E7470EE14C6C93, 0xCA5A826395121157
W0, W1 = 0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B
U64 = 2**64 - 1


def philox4x64_10(counter: int, key: int) -> list[int]:
    """Philox4x64-10 of a 256-bit counter and 128-bit key, words low first (Salmon
    et al., 2011; Random123's round and key schedule), in Python integers."""
    c = [counter >> (64 * i) & U64 for i in range(4)]
    k0, k1 = key & U64, key >> 64
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & U64, (k1 + W1) & U64
        p0, p1 = M0 * c[0], M1 * c[2]
        c = [(p1 >> 64) ^ c[1] ^ k0, p1 & U64, (p0 >> 64) ^ c[3] ^ k1, p0 & U64]
    return c


def host(backend, a):
    return backend.to_numpy(a)


# ------------------------------------------------------------------ the stream
@pytest.mark.parametrize("counter", [0, 5, 2**64 - 2, 2**128 - 1])
def test_numpy_philox_increments_its_counter_before_each_block(counter):
    key = 0x0123456789ABCDEF_FEDCBA9876543210
    words = np.random.Philox(key=key, counter=counter).random_raw(12)
    expected = [w for b in range(1, 4) for w in philox4x64_10(counter + b, key)]
    assert [int(w) for w in words] == expected


def test_counter_rng_draws_numpys_philox_stream():
    rng = CounterRNG(42)
    assert np.array_equal(rng.random_raw(8), np.random.Philox(42).random_raw(8))
    for n in (0, 1, 7, 9, 4):  # each draw starts on a fresh block
        start = rng.counter
        expected = np.random.Philox(key=rng.key, counter=start).random_raw(n)
        assert np.array_equal(rng.random_raw(n), expected)
        assert rng.counter == start + -(-n // 4)


def test_counter_rng_state_round_trips_through_json():
    rng = CounterRNG(3)
    rng.random_raw(10)
    saved = json.loads(json.dumps(rng.get_state()))
    first = rng.random_raw(6)
    other = CounterRNG(99)
    other.set_state(saved)
    assert np.array_equal(other.random_raw(6), first)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.pop("counter"),
        lambda s: s.update(counter=-1),
        lambda s: s.update(counter=2**256),
        lambda s: s.update(counter=True),
        lambda s: s.update(counter=1.5),
        lambda s: s.update(key="0x" + "f" * 33),
        lambda s: s.update(key="zz"),
        lambda s: s.update(key=12),
        lambda s: s.update(bit_generator="PCG64"),
        lambda s: s.update(extra=1),
    ],
)
def test_counter_rng_refuses_a_bad_state_and_changes_nothing(edit):
    rng = CounterRNG(1)
    before = rng.get_state()
    state = dict(before)
    edit(state)
    with pytest.raises(ValueError, match="CounterRNG"):
        rng.set_state(state)
    with pytest.raises(ValueError, match="CounterRNG"):
        rng.set_state([1, 2])
    assert rng.get_state() == before


def test_dropout_threshold_is_exact_and_checked():
    assert dropout_threshold(0.0) == 0 and dropout_threshold(0.5) == 2**63
    assert dropout_threshold(0.25) == 2**62
    for rate in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="rate"):
            dropout_threshold(rate)


# ------------------------------------------------------------------ dropout kernel
def _sizes(backend):
    """Element counts: empty, one, odd, and more Philox blocks than one grid."""
    return [
        (0, 3),
        (1, 1),
        (7, 13),
        (5, (4 * BLOCK * backend.kernels.max_blocks) // 5 + 3),
    ]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_dropout_mask_is_the_philox_stream_bit_for_bit(
    kernel_backend, reference, dtype
):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
        dtype = bfloat16()
    for shape in _sizes(kernel_backend):
        x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        dy = np.random.default_rng(1).standard_normal(shape).astype(dtype)
        ours, theirs, stream = CounterRNG(7), CounterRNG(7), CounterRNG(7)
        for _ in range(2):  # the second draw starts where the first left off
            words = stream.random_raw(x.size).reshape(shape)
            keep = words >= dropout_threshold(0.3)
            y, mask = kernel_backend.dropout(kernel_backend.asarray(x), 0.3, ours)
            y_ref, mask_ref = reference.dropout(x, 0.3, theirs)
            np.testing.assert_array_equal(mask_ref.keep, keep)
            bits = np.packbits(keep.ravel(), bitorder="little")
            bits = np.pad(bits, (0, -bits.size % 4)).view(np.uint32)
            np.testing.assert_array_equal(host(kernel_backend, mask.bits), bits)
            assert y.dtype == x.dtype and y.shape == x.shape
            np.testing.assert_array_equal(host(kernel_backend, y), y_ref)
            dx = kernel_backend.backprop_dropout(kernel_backend.asarray(dy), mask)
            dx_ref = reference.backprop_dropout(dy, mask_ref)
            np.testing.assert_array_equal(host(kernel_backend, dx), dx_ref)
            assert ours.counter == theirs.counter == stream.counter


def test_dropout_scales_the_kept_elements_and_backward_uses_the_same_mask(
    kernel_backend,
):
    x = np.random.default_rng(0).uniform(1, 2, (9, 31))
    y, mask = kernel_backend.dropout(kernel_backend.asarray(x), 0.4, CounterRNG(1))
    y = host(kernel_backend, y)
    keep = y != 0
    stored = host(kernel_backend, mask.keep_array(kernel_backend.xp))
    np.testing.assert_array_equal(keep, stored)
    np.testing.assert_array_equal(y[keep], x[keep] * (1 / 0.6))
    dy = np.random.default_rng(2).standard_normal(x.shape)
    dx = kernel_backend.backprop_dropout(kernel_backend.asarray(dy), mask)
    dx = host(kernel_backend, dx)
    np.testing.assert_array_equal(dx, np.where(keep, dy * (1 / 0.6), 0.0))


@pytest.mark.parametrize("rate", [0.0, 1 - 2**-20, float(np.nextafter(1.0, 0.0))])
def test_dropout_at_rates_zero_and_near_one(kernel_backend, reference, rate):
    x = np.random.default_rng(0).standard_normal((33, 65)).astype(np.float32)
    y, _ = kernel_backend.dropout(kernel_backend.asarray(x), rate, CounterRNG(5))
    y_ref, mask_ref = reference.dropout(x, rate, CounterRNG(5))
    np.testing.assert_array_equal(host(kernel_backend, y), y_ref)
    if rate == 0:
        np.testing.assert_array_equal(y_ref, x)
    else:
        assert mask_ref.keep.sum() <= 1  # P(keep) <= 2**-20 for each of 2,145


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_statistics(kernel_backend, rate):
    x = kernel_backend.asarray(np.ones((200, 250), np.float32))
    y = host(kernel_backend, kernel_backend.dropout(x, rate, CounterRNG(11))[0])
    assert abs((y == 0).mean() - rate) < 0.01  # 50,000 draws: the sd is < 0.0023
    assert abs(y.mean() - 1) < 0.05  # E[y] = x


def test_dropout_rejects_bad_input_like_the_reference(kernel_backend, reference):
    x = np.ones((4, 5), np.float32)
    for backend in (kernel_backend, reference):
        rng = CounterRNG(0)
        with pytest.raises(ValueError, match="rate"):
            backend.dropout(backend.asarray(x), 1.0, rng)
        assert rng.counter == 0  # nothing drawn
        _, mask = backend.dropout(backend.asarray(x), 0.5, rng)
        with pytest.raises(ValueError, match="shape"):
            backend.backprop_dropout(backend.asarray(np.ones((5, 4), np.float32)), mask)


def test_dropout_of_a_strided_view_falls_back_to_the_same_mask(
    kernel_backend, reference
):
    x = np.random.default_rng(0).standard_normal((6, 10))
    view = kernel_backend.asarray(x)[:, ::2]
    y, mask = kernel_backend.dropout(view, 0.5, CounterRNG(4))
    y_ref, _ = reference.dropout(x[:, ::2], 0.5, CounterRNG(4))
    np.testing.assert_array_equal(host(kernel_backend, y), y_ref)
    assert isinstance(mask, DropoutMask)


def _dropout_model(backend, seed=3):
    layer = Dropout(0.5)
    gpunn.Sequential([layer], input_dim=40, dtype="float32", backend=backend, seed=seed)
    return layer


def test_dropout_layer_masks_equal_on_both_backends_and_resume(
    kernel_backend, reference
):
    x = np.ones((10, 40), np.float32)
    ours, theirs = _dropout_model(kernel_backend), _dropout_model(reference)
    assert isinstance(ours.generator, CounterRNG)
    for _ in range(2):
        y = ours.forward(kernel_backend.asarray(x), training=True)
        np.testing.assert_array_equal(host(kernel_backend, y), theirs.forward(x, True))
    x = kernel_backend.asarray(x)
    saved = json.dumps(kernel_backend.generator_state(ours.generator))
    first = [host(kernel_backend, ours.forward(x, True)) for _ in range(2)]
    fresh = _dropout_model(kernel_backend, seed=8)  # a resumed run: another seed
    kernel_backend.set_generator_state(fresh.generator, json.loads(saved))
    again = [host(kernel_backend, fresh.forward(x, True)) for _ in range(2)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])  # a new mask every step


# ------------------------------------------------------------------ batch norm
def _bn_shapes(backend):
    most = backend.kernels.max_blocks
    return [(2, 1), (7, 13), (most * BLOCK + 7, 3), (5, 32 * most + 5)]


def _bn_inputs(shape, dtype, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    n = shape[1]
    x = rng.standard_normal(shape) * 2 + offset + rng.standard_normal(n)
    gamma, beta = rng.standard_normal(n), rng.standard_normal(n)
    running = rng.standard_normal(n), rng.uniform(0.5, 2, n)
    return [a.astype(dtype) for a in (x, gamma, beta, *running)]


def _train(backend, x, gamma, beta, rm, rv, affine):
    rm, rv = backend.asarray(rm.copy()), backend.asarray(rv.copy())
    g, b = (backend.asarray(gamma), backend.asarray(beta)) if affine else (None, None)
    out = backend.batch_norm_train_(backend.asarray(x), g, b, rm, rv, 0.1, 1e-5)
    return [host(backend, a) for a in (*out, rm, rv)]


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_train_matches_the_reference(
    kernel_backend, reference, dtype, affine, offset
):
    for shape in _bn_shapes(kernel_backend):
        x, gamma, beta, rm, rv = _bn_inputs(shape, dtype, offset)
        ours = _train(kernel_backend, x, gamma, beta, rm, rv, affine)
        exact = [a.astype(np.float64) for a in (x, gamma, beta, rm, rv)]
        truth = _train(reference, *exact, affine)
        for name, a, b in zip(("y", "x_hat", "inv_std", "rm", "rv"), ours, truth):
            assert a.dtype == np.dtype(dtype) and a.shape == b.shape, name
            assert_close(a, b, dtype, REDUCTION_TOL)
        assert abs(ours[1].std(axis=0) - 1).max() < 1e-3  # unit variance


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_eval_is_the_reference_formula(kernel_backend, reference, dtype):
    for shape in _bn_shapes(kernel_backend):
        x, gamma, beta, rm, rv = _bn_inputs(shape, dtype)
        for g, b in ((gamma, beta), (None, None), (gamma, None), (None, beta)):
            args = [
                kernel_backend.asarray(a) if a is not None else None
                for a in (x, g, b, rm, rv)
            ]
            y = kernel_backend.batch_norm_eval(*args, 1e-5)
            expected = reference.batch_norm_eval(x, g, b, rm, rv, 1e-5)
            np.testing.assert_array_equal(host(kernel_backend, y), expected)


def _backward(backend, dy, x_hat, inv_std, gamma, grads, need_dx):
    dev = [
        None if a is None else backend.asarray(a) for a in (dy, x_hat, inv_std, gamma)
    ]
    dtype = np.float32 if dy.dtype.itemsize == 2 else dy.dtype  # the float32 arena
    dgamma, dbeta = (
        None if not g else backend.zeros(dy.shape[1], dtype) for g in grads
    )
    dx = backend.backprop_batch_norm_(*dev, dgamma, dbeta, need_dx)
    return [None if a is None else host(backend, a) for a in (dx, dgamma, dbeta)]


@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_backward_matches_the_reference(
    kernel_backend, reference, dtype, affine, need_dx
):
    grads = (affine, affine) if need_dx else (affine, True)
    for shape in _bn_shapes(kernel_backend):
        x, gamma, beta, rm, rv = _bn_inputs(shape, dtype, offset=3.0)
        _, x_hat, inv_std, *_ = _train(kernel_backend, x, gamma, beta, rm, rv, affine)
        dy = np.random.default_rng(5).standard_normal(shape).astype(dtype)
        g = gamma if affine else None
        ours = _backward(kernel_backend, dy, x_hat, inv_std, g, grads, need_dx)
        exact = [
            None if a is None else a.astype(np.float64) for a in (dy, x_hat, inv_std, g)
        ]
        truth = _backward(reference, *exact, grads, need_dx)
        for a, b in zip(ours, truth):
            assert (a is None) == (b is None)
            if a is not None:
                assert a.dtype == np.dtype(dtype)
                assert_close(a, b, dtype, REDUCTION_TOL)


def test_batch_norm_kernels_give_the_same_bits_every_run(kernel_backend):
    shape = _bn_shapes(kernel_backend)[2]
    x, gamma, beta, rm, rv = _bn_inputs(shape, "float32")
    dy = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    runs = []
    for _ in range(2):
        out = _train(kernel_backend, x, gamma, beta, rm, rv, True)
        runs.append(
            out
            + _backward(kernel_backend, dy, out[1], out[2], gamma, (True, True), True)
        )
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_falls_back_and_raises_like_the_reference(kernel_backend, reference):
    x, gamma, beta, rm, rv = _bn_inputs((6, 4), "float16")  # 16-bit statistics
    for backend in (kernel_backend, reference):
        with pytest.raises(ValueError, match="running_mean must have dtype float32"):
            _train(backend, x, gamma, beta, rm, rv, True)
    x, gamma, beta, rm, rv = _bn_inputs((6, 4), "float32")
    for backend in (kernel_backend, reference):
        with pytest.raises(ValueError):
            _train(backend, x, gamma[:3], beta[:3], rm, rv, True)


def _half(name):
    return np.dtype(np.float16) if name == "float16" else bfloat16()


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_batch_norm_16_bit_data_with_float32_statistics(
    kernel_backend, reference, half, affine
):
    """Mixed precision: 16-bit x, y, dy and dx; float32 statistics, parameters,
    x_hat and gradients. The statistics match the reference to float32's reduction
    tolerance, the 16-bit outputs to one rounding."""
    pytest.importorskip("ml_dtypes")
    half = _half(half)
    tol = (8e-3, 8e-3) if half.name == "bfloat16" else (1e-3, 1e-3)
    for shape in _bn_shapes(kernel_backend)[:3]:
        x, gamma, beta, rm, rv = _bn_inputs(shape, "float32", offset=3.0)
        x = x.astype(half)
        ours = _train(kernel_backend, x, gamma, beta, rm, rv, affine)
        truth = _train(reference, x, gamma, beta, rm, rv, affine)
        assert ours[0].dtype == half and ours[1].dtype == np.float32
        np.testing.assert_allclose(
            ours[0].astype(np.float64), truth[0].astype(np.float64), *tol
        )
        for a, b in zip(ours[1:], truth[1:]):
            assert a.dtype == np.float32
            assert_close(a, b, np.float32, REDUCTION_TOL)
        dy = np.random.default_rng(5).standard_normal(shape).astype(half)
        g = gamma if affine else None
        grads = (affine, True)
        back = [
            _backward(b, dy, ours[1], ours[2], g, grads, True)
            for b in (kernel_backend, reference)
        ]
        assert back[0][0].dtype == half
        np.testing.assert_allclose(
            back[0][0].astype(np.float64), back[1][0].astype(np.float64), *tol
        )
        for a, b in zip(back[0][1:], back[1][1:]):
            if a is not None:
                assert a.dtype == np.float32
                assert_close(a, b, np.float32, REDUCTION_TOL)
        args = [None if not affine else gamma, None if not affine else beta, rm, rv]
        y = [
            host(b, b.batch_norm_eval(b.asarray(x), *_device(b, args), 1e-5))
            for b in (kernel_backend, reference)
        ]
        assert y[0].dtype == half
        np.testing.assert_allclose(
            y[0].astype(np.float64), y[1].astype(np.float64), *tol
        )


def _device(backend, arrays):
    return [None if a is None else backend.asarray(a) for a in arrays]
