"""Backend ops against float64 references written independently of the backend code,
on every backend, with the input dtype preserved."""

import math

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close


def run(backend, op, *arrays, dtype):
    """Runs ``backend.<op>`` on device copies of ``arrays`` cast to ``dtype``."""
    args = [
        backend.asarray(a.astype(dtype) if a.dtype.kind == "f" else a) for a in arrays
    ]
    return getattr(backend, op)(*args)


def host(backend, x):
    return backend.to_numpy(x)


# ------------------------------------------------------------------ activations
def ref_sigmoid(x):
    return np.array(
        [
            1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
            for v in x.ravel()
        ]
    ).reshape(x.shape)


ACTIVATIONS = {
    "relu": (lambda x: np.where(x > 0, x, 0.0), lambda x, y: (x > 0).astype(float)),
    "sigmoid": (ref_sigmoid, lambda x, y: y * (1 - y)),
    "tanh": (
        lambda x: np.vectorize(math.tanh, otypes=[float])(x),
        lambda x, y: 1 - y**2,
    ),
    "identity": (lambda x: x, lambda x, y: np.ones_like(x)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 13), (64, 129)])
def test_activation_forward_and_backprop(backend, dtype, rng, name, shape):
    forward, derivative = ACTIVATIONS[name]
    x = rng.standard_normal(shape) * 3
    dy = rng.standard_normal(shape)
    x = x.astype(dtype).astype(np.float64)  # the reference sees the rounded input
    y = run(backend, name, x, dtype=dtype)
    assert y.dtype == dtype and y.shape == shape
    y_ref = forward(x)
    assert_close(host(backend, y), y_ref, dtype)
    dx = getattr(backend, "backprop_" + name)(backend.asarray(dy.astype(dtype)), y)
    assert dx.dtype == dtype
    dx_ref = dy.astype(dtype).astype(np.float64) * derivative(x, y_ref)
    rtol, atol = (1e-5, 1e-5) if dtype == np.float32 else (1e-7, 1e-7)
    np.testing.assert_allclose(host(backend, dx), dx_ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("value", [-1e4, -88.0, -30.0, 0.0, 30.0, 88.0, 1e4])
def test_activation_extremes_are_finite(backend, dtype, value):
    x = np.full((2, 3), value)
    for name in ACTIVATIONS:
        y = host(backend, run(backend, name, x, dtype=dtype))
        assert np.isfinite(y).all(), (name, value)
        assert_close(y, ACTIVATIONS[name][0](x), dtype)
        dx = backend.to_numpy(
            getattr(backend, "backprop_" + name)(
                backend.asarray(np.ones((2, 3), dtype)), backend.asarray(y)
            )
        )
        assert np.isfinite(dx).all(), (name, value)


def test_relu_subgradient_at_zero_is_zero(backend, dtype):
    y = run(backend, "relu", np.zeros((1, 4)), dtype=dtype)
    dx = backend.backprop_relu(backend.asarray(np.ones((1, 4), dtype)), y)
    assert (host(backend, dx) == 0).all()


def test_softmax_and_its_backprop(backend, dtype, rng):
    x = (rng.standard_normal((9, 11)) * 5).astype(dtype).astype(np.float64)
    dy = rng.standard_normal((9, 11))
    y = run(backend, "softmax", x, dtype=dtype)
    e = np.exp(x - x.max(1, keepdims=True))
    ref = e / e.sum(1, keepdims=True)
    assert y.dtype == dtype
    assert_close(host(backend, y), ref, dtype, REDUCTION_TOL)
    dx = backend.backprop_softmax(backend.asarray(dy.astype(dtype)), y)
    jac = np.stack([np.diag(r) - np.outer(r, r) for r in ref])  # (n, c, c)
    assert_close(
        host(backend, dx), np.einsum("nij,nj->ni", jac, dy), dtype, REDUCTION_TOL
    )


# ------------------------------------------------------------------ losses
def ref_softmax_ce(z, labels):
    """Per-row log-sum-exp with math.fsum: independent of the backend's formula."""
    n = len(z)
    loss, grad = 0.0, np.zeros_like(z)
    for i in range(n):
        m = max(z[i])
        lse = m + math.log(math.fsum(math.exp(v - m) for v in z[i]))
        loss += lse - z[i, labels[i]]
        grad[i] = [math.exp(v - lse) for v in z[i]]
        grad[i, labels[i]] -= 1
    return loss / n, grad / n


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (5, 3), (33, 10), (4, 1000)])
def test_softmax_cross_entropy(backend, dtype, rng, shape):
    z = (rng.standard_normal(shape) * 4).astype(dtype).astype(np.float64)
    labels = rng.integers(0, shape[1], shape[0])
    loss, dz = run(backend, "softmax_cross_entropy", z, labels, dtype=dtype)
    ref_loss, ref_dz = ref_softmax_ce(z, labels)
    assert loss.dtype == dtype and dz.dtype == dtype and dz.shape == shape
    assert_close(float(loss), ref_loss, dtype, REDUCTION_TOL)
    assert_close(host(backend, dz), ref_dz, dtype, REDUCTION_TOL)


@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_softmax_cross_entropy_extreme_logits(backend, dtype, rng, scale):
    z = rng.standard_normal((6, 5)) * scale
    z[0] = [scale, -scale, 0, 0, 0]  # one huge row
    z[1, 2] = -np.inf  # a -inf logit that is not the label
    labels = np.array([0, 1, 1, 3, 4, 0])
    loss, dz = run(backend, "softmax_cross_entropy", z, labels, dtype=dtype)
    assert np.isfinite(float(loss)) and np.isfinite(host(backend, dz)).all()
    ref_loss, ref_dz = ref_softmax_ce(z.astype(dtype).astype(np.float64), labels)
    assert_close(float(loss), ref_loss, dtype, REDUCTION_TOL)
    assert_close(host(backend, dz), ref_dz, dtype, REDUCTION_TOL)


def ref_bce(z, t):
    loss = [
        max(v, 0) - v * s + math.log1p(math.exp(-abs(v)))
        for v, s in zip(z.ravel(), t.ravel())
    ]
    grad = (ref_sigmoid(z) - t) / z.size
    return math.fsum(loss) / z.size, grad


@pytest.mark.parametrize("shape", [(1, 1), (17, 1), (8, 3)])
def test_binary_cross_entropy(backend, dtype, rng, shape):
    z = (rng.standard_normal(shape) * 6).astype(dtype).astype(np.float64)
    t = rng.integers(0, 2, shape).astype(np.float64)
    t.flat[0] = 0.3  # soft targets are allowed, as in PyTorch
    loss, dz = run(backend, "binary_cross_entropy", z, t, dtype=dtype)
    ref_loss, ref_dz = ref_bce(z, t)
    assert loss.dtype == dtype and dz.dtype == dtype
    assert_close(float(loss), ref_loss, dtype, REDUCTION_TOL)
    assert_close(host(backend, dz), ref_dz, dtype, REDUCTION_TOL)


def test_binary_cross_entropy_extremes(backend, dtype):
    z = np.array([[1e4], [-1e4], [100.0], [-100.0], [88.0]])
    t = np.array([[0.0], [1.0], [1.0], [0.0], [0.0]])
    loss, dz = run(backend, "binary_cross_entropy", z, t, dtype=dtype)
    ref_loss, ref_dz = ref_bce(z, t)
    assert_close(float(loss), ref_loss, dtype, REDUCTION_TOL)
    assert_close(host(backend, dz), ref_dz, dtype, REDUCTION_TOL)


def test_mse(backend, dtype, rng):
    p, t = rng.standard_normal((10, 3)), rng.standard_normal((10, 3))
    p, t = (a.astype(dtype).astype(np.float64) for a in (p, t))
    loss, dp = run(backend, "mse", p, t, dtype=dtype)
    assert loss.dtype == dtype and dp.dtype == dtype
    assert_close(
        float(loss), math.fsum(((p - t) ** 2).ravel()) / p.size, dtype, REDUCTION_TOL
    )
    assert_close(host(backend, dp), 2 * (p - t) / p.size, dtype)


# ------------------------------------------------------------------ dense, reductions
@pytest.mark.parametrize("bias", [True, False])
def test_dense_forward_backward(backend, dtype, rng, bias):
    x, w, b = (
        rng.standard_normal((7, 5)),
        rng.standard_normal((5, 3)),
        rng.standard_normal(3),
    )
    dy = rng.standard_normal((7, 3))
    x, w, b, dy = (a.astype(dtype) for a in (x, w, b, dy))
    xd, wd, bd, dyd = (backend.asarray(a) for a in (x, w, b, dy))
    y = backend.dense_forward(xd, wd, bd if bias else None)
    x64, w64, b64, dy64 = (a.astype(np.float64) for a in (x, w, b, dy))
    assert y.dtype == dtype
    assert_close(
        host(backend, y), x64 @ w64 + (b64 if bias else 0), dtype, REDUCTION_TOL
    )
    dw, db = backend.zeros((5, 3), dtype), backend.zeros(3, dtype)
    dx = backend.dense_backward_(xd, wd, dyd, dw, db if bias else None)
    assert dx.dtype == dtype
    assert_close(host(backend, dx), dy64 @ w64.T, dtype, REDUCTION_TOL)
    assert_close(host(backend, dw), x64.T @ dy64, dtype, REDUCTION_TOL)
    assert_close(host(backend, db), dy64.sum(0) if bias else 0, dtype, REDUCTION_TOL)
    assert backend.dense_backward_(xd, wd, dyd, dw, need_dx=False) is None


def test_count_correct(backend, dtype):
    out = backend.asarray(np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 3.0]], dtype))
    labels = backend.asarray(np.array([1, 0, 0]))
    counts = backend.to_numpy(backend.count_correct(out, labels, "multiclass"))
    assert counts.tolist() == [2, 3]
    logits = backend.asarray(np.array([[0.5], [-0.5], [2.0]], dtype))
    targets = backend.asarray(np.array([[1.0], [1.0], [1.0]], dtype))
    assert backend.to_numpy(
        backend.count_correct(logits, targets, "binary")
    ).tolist() == [2, 3]


def test_ignored_labels_are_not_scored(backend, dtype):
    out = backend.asarray(np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 3.0]], dtype))
    labels = backend.asarray(np.array([1, -100, 0]))
    host = backend.to_numpy
    assert host(backend.count_correct(out, labels, "multiclass")).tolist() == [1, 2]
    assert host(backend.count_top_k(out, labels, 1)).tolist() == [1, 2]
    counts = host(backend.class_counts(out, labels, "multiclass"))
    assert counts.tolist() == [0, 1, 0, 2, 1, 1]  # [tp | predicted | actual]


@pytest.mark.parametrize("op", ["binary_cross_entropy", "mse"])
def test_fused_losses_reject_mismatched_targets(backend, op):
    z = backend.asarray(np.zeros((4, 1), np.float32))
    for targets, what in [
        (np.zeros(4, np.float32), r"shape \(4,\)"),
        (np.zeros((4, 1), np.float64), "dtype float64"),
    ]:
        with pytest.raises(
            ValueError,
            match=f"{op} needs targets of the outputs' shape "
            rf"\(4, 1\) .*{what}",
        ):
            getattr(backend, op)(z, backend.asarray(targets))


def test_softmax_cross_entropy_rejects_bad_labels(backend):
    z = backend.asarray(np.zeros((3, 4), np.float32))
    for labels in (np.zeros(2, np.int64), np.zeros((3, 1), np.int64), np.zeros(3)):
        with pytest.raises(ValueError, match=r"integer labels of shape \(3,\)"):
            backend.softmax_cross_entropy(z, backend.asarray(labels))
