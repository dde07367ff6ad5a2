"""Losses: every loss and option against float64 references written here with plain
loops (gradients by central differences of the reference), on every backend and
dtype; finite-difference gradient checks; extreme inputs; the torch golden values
(tests/data/loss_golden.json); names, options and bad targets."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close

import gpunn
from gpunn import losses
from gpunn.errors import InvalidInputError, LabelError

GOLDEN = json.loads((Path(__file__).parent / "data" / "loss_golden.json").read_text())
LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------ references
def lse(row):
    top = max(row)
    return top + math.log(math.fsum(math.exp(v - top) for v in row))


def softplus(v):  # log(1 + e^v) without overflow
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def ref_ce(
    z, y, class_weight=None, label_smoothing=0.0, temperature=1.0, ignore_index=None
):
    """PyTorch's CrossEntropyLoss formulas; returns per-sample terms and divisor."""
    n, c = z.shape
    w = np.ones(c) if class_weight is None else np.asarray(class_weight)
    ls, terms = label_smoothing, []
    if ignore_index is not None:
        kept = [i for i in range(n) if y[i] != ignore_index]
        part, divisor = ref_ce(z[kept], y[kept], class_weight, ls, temperature)
        terms = np.zeros(n)
        terms[kept] = part
        return list(terms), divisor if kept else 1.0
    for i in range(n):
        zi = [v / temperature for v in z[i]]
        nll = [lse(zi) - v for v in zi]
        if np.ndim(y) == 1:
            spread = math.fsum(w[j] * nll[j] for j in range(c)) if ls else 0.0
            terms.append((1 - ls) * w[y[i]] * nll[y[i]] + ls / c * spread)
        else:
            t = [(1 - ls) * y[i][j] + ls / c for j in range(c)]
            terms.append(math.fsum(w[j] * t[j] * nll[j] for j in range(c) if t[j]))
    divisor = math.fsum(w[v] for v in y) if np.ndim(y) == 1 else n
    return terms, divisor


def ref_bce(z, t, pos_weight=None, label_smoothing=0.0):
    p = np.broadcast_to(1.0 if pos_weight is None else pos_weight, z.shape[1:])
    terms = []
    for zi, ti in zip(z, t):
        row = []
        for j, (v, s) in enumerate(zip(zi, ti)):
            s = s * (1 - label_smoothing) + 0.5 * label_smoothing
            row.append(p[j] * s * softplus(-v) + (1 - s) * softplus(v))
        terms.append(math.fsum(row) / len(row))
    return terms, len(z)


def ref_elementwise(kind, delta=1.0):
    def per_element(d):
        if kind == "mse":
            return d * d
        if kind == "mae":
            return abs(d)
        return 0.5 * d * d if abs(d) < delta else delta * (abs(d) - 0.5 * delta)

    def ref(z, t):
        terms = [
            math.fsum(map(per_element, zi - ti)) / z.shape[1] for zi, ti in zip(z, t)
        ]
        return terms, len(z)

    return ref


def ref_gaussian(z, y, full=False, eps=1e-6):
    k, terms = y.shape[1], []
    for zi, yi in zip(z, y):
        row = []
        for j in range(k):
            v = max(zi[k + j], math.log(eps))  # torch: var.clamp(min=eps)
            row.append(0.5 * (v + (zi[j] - yi[j]) ** 2 * math.exp(-v)))
            row[-1] += 0.5 * LOG_2PI if full else 0.0
        terms.append(math.fsum(row) / k)
    return terms, len(z)


def ref_mdn(n_components):
    def ref(z, y):
        kk, d, terms = n_components, y.shape[1], []
        for zi, yi in zip(z, y):
            log_pi = [a - lse(zi[:kk]) for a in zi[:kk]]
            comps = []
            for k in range(kk):
                log_n = 0.0
                for j in range(d):
                    mu, ls = zi[kk + k * d + j], zi[kk + kk * d + k * d + j]
                    log_n -= 0.5 * ((yi[j] - mu) / math.exp(ls)) ** 2 + ls
                comps.append(log_pi[k] + log_n - 0.5 * d * LOG_2PI)
            terms.append(-lse(comps))
        return terms, len(z)

    return ref


def weighted(ref, sample_weight):
    """Loss = sum_i s_i l_i / divisor as a function of the outputs."""

    def f(z, y):
        terms, divisor = ref(z, y)
        s = np.ones(len(terms)) if sample_weight is None else sample_weight
        return math.fsum(si * ti for si, ti in zip(s, terms)) / divisor

    return f


def numeric_grad(f, z, eps=1e-6):
    grad = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        if not np.isfinite(z[idx]):
            continue
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        grad[idx] = (f(zp) - f(zm)) / (2 * eps)
    return grad


# ------------------------------------------------------------------ cases
W5 = [0.5, 2.0, 1.0, 0.25, 1.5]
N = 7


def probs(rng):
    return rng.dirichlet(np.ones(5), N)


def onehot(rng):
    return np.eye(5)[rng.integers(0, 5, N)]


def labels(rng):
    return rng.integers(0, 5, N)


def labels_ignoring(rng, ignore=-100):
    y = labels(rng)
    y[[1, 4]] = ignore
    return y


def sample_weight(rng):
    return rng.uniform(0, 2, N)


def regression(rng, width=3):
    return rng.standard_normal((N, width)) * 3


def nll_outputs(rng):
    return np.hstack([rng.standard_normal((N, 2)), rng.uniform(-4, 4, (N, 2))])


def mdn_outputs(rng):
    parts = [rng.standard_normal((N, 3)) * 2, rng.standard_normal((N, 6))]
    return np.hstack(parts + [rng.uniform(-1, 0.7, (N, 6))])


def logits(rng, width=5):
    return rng.standard_normal((N, width)) * 3


# id: (loss, outputs, targets, reference, with sample weights)
CASES = {
    "ce": (losses.SoftmaxCrossEntropy(), logits, labels, ref_ce),
    "ce-weight": (
        losses.SoftmaxCrossEntropy(class_weight=W5),
        logits,
        labels,
        lambda z, y: ref_ce(z, y, W5),
    ),
    "ce-smooth": (
        losses.SoftmaxCrossEntropy(label_smoothing=0.2),
        logits,
        labels,
        lambda z, y: ref_ce(z, y, label_smoothing=0.2),
    ),
    "ce-weight-smooth-temp": (
        losses.SoftmaxCrossEntropy(0.3, W5, temperature=2.5),
        logits,
        labels,
        lambda z, y: ref_ce(z, y, W5, 0.3, 2.5),
    ),
    "ce-ignore-weight-smooth": (
        losses.SoftmaxCrossEntropy(0.2, W5, ignore_index=-100),
        logits,
        labels_ignoring,
        lambda z, y: ref_ce(z, y, W5, 0.2, ignore_index=-100),
    ),
    "ce-ignore-in-range-temp": (
        losses.SoftmaxCrossEntropy(temperature=2.0, ignore_index=1),
        logits,
        labels,
        lambda z, y: ref_ce(z, y, temperature=2.0, ignore_index=1),
    ),
    "ce-probs": (losses.get("cross_entropy"), logits, probs, ref_ce),
    "ce-probs-all": (
        losses.SoftmaxCrossEntropy(0.1, W5, temperature=0.5),
        logits,
        probs,
        lambda z, y: ref_ce(z, y, W5, 0.1, 0.5),
    ),
    "ce-onehot-weight": (
        losses.SoftmaxCrossEntropy(class_weight=W5),
        logits,
        onehot,
        lambda z, y: ref_ce(z, y, W5),
    ),
    "bce": (
        losses.BinaryCrossEntropy(),
        regression,
        lambda r: onehot(r)[:, :3],
        ref_bce,
    ),
    "bce-pos-smooth": (
        losses.BinaryCrossEntropy([3.0, 0.5, 1.0], label_smoothing=0.2),
        regression,
        lambda r: r.uniform(0, 1, (N, 3)),
        lambda z, t: ref_bce(z, t, [3.0, 0.5, 1.0], 0.2),
    ),
    "bce-pos-scalar": (
        losses.get("bce", pos_weight=2.0),
        regression,
        lambda r: onehot(r)[:, :3],
        lambda z, t: ref_bce(z, t, 2.0),
    ),
    "mse": (losses.MeanSquaredError(), regression, regression, ref_elementwise("mse")),
    "mae": (losses.get("l1"), regression, regression, ref_elementwise("mae")),
    "huber": (losses.Huber(0.8), regression, regression, ref_elementwise("huber", 0.8)),
    "gaussian_nll": (
        losses.GaussianNLL(),
        nll_outputs,
        lambda r: r.standard_normal((N, 2)),
        ref_gaussian,
    ),
    "gaussian_nll-full": (
        losses.GaussianNLL(full=True),
        nll_outputs,
        lambda r: r.standard_normal((N, 2)),
        lambda z, y: ref_gaussian(z, y, full=True),
    ),
    "mdn": (
        losses.mdn(3),
        mdn_outputs,
        lambda r: r.standard_normal((N, 2)),
        ref_mdn(3),
    ),
}


def run_loss(backend, loss, z, y, dtype, weight=None):
    t = loss.prepare_targets(y, z.shape[1], dtype)
    w = None if weight is None else backend.asarray(weight.astype(dtype))
    value, grad = loss(backend, backend.asarray(z.astype(dtype)), backend.asarray(t), w)
    return value, grad


@pytest.mark.parametrize("weights", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_matches_float64_reference(backend, dtype, rng, case, weights):
    loss, make_z, make_y, ref = CASES[case]
    z = make_z(rng).astype(dtype).astype(np.float64)
    y = make_y(rng)
    s = sample_weight(rng) if weights else None
    s64 = None if s is None else s.astype(dtype).astype(np.float64)
    value, grad = run_loss(backend, loss, z, y, dtype, s)
    assert value.dtype == dtype and grad.dtype == dtype and grad.shape == z.shape
    f = weighted(ref, s64)
    assert_close(float(value), f(z, y), dtype, REDUCTION_TOL)
    expected = numeric_grad(lambda v: f(v, y), z)
    assert_close(backend.to_numpy(grad), expected, dtype, REDUCTION_TOL)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck_every_loss_and_option(rng, case):
    loss, make_z, make_y, _ = CASES[case]
    z, y = make_z(rng), make_y(rng)
    assert gpunn.gradcheck(loss, z, y)
    assert gpunn.gradcheck(loss, z, y, sample_weight=sample_weight(rng))


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["loss"])
def test_matches_torch_golden(backend, case):
    arrays = GOLDEN["arrays"]
    z, y = np.array(arrays[case["outputs"]]), np.array(arrays[case["targets"]])
    loss = losses.get(case["loss"], **case["options"])
    value, grad = run_loss(backend, loss, z, y, np.float64)
    np.testing.assert_allclose(float(value), case["value"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(backend.to_numpy(grad), case["grad"], atol=1e-14)


def test_class_and_sample_weights_combine_as_documented(backend, rng):
    """sum_i s_i w[y_i] l_i / sum_i w[y_i], l_i the plain cross-entropy of sample i."""
    loss = losses.SoftmaxCrossEntropy(class_weight=W5)
    z, y, s = logits(rng), labels(rng), sample_weight(rng)
    single = [
        float(run_loss(backend, loss, z[i : i + 1], y[i : i + 1], "f8")[0])
        for i in range(N)
    ]
    w = np.array(W5)[y]
    value, _ = run_loss(backend, loss, z, y, np.float64, s)
    assert float(value) == pytest.approx((s * w * single).sum() / w.sum(), rel=1e-12)


def test_ignore_index_leaves_samples_out(backend, rng):
    """An ignored sample changes nothing; every sample ignored gives 0 and a zero
    gradient (PyTorch gives NaN)."""
    z, y, s = logits(rng), labels_ignoring(rng), sample_weight(rng)
    loss = losses.SoftmaxCrossEntropy(0.1, W5, ignore_index=-100)
    value, grad = run_loss(backend, loss, z, y, np.float64, s)
    kept = y != -100
    alone, alone_grad = run_loss(backend, loss, z[kept], y[kept], np.float64, s[kept])
    assert float(value) == pytest.approx(float(alone), rel=1e-12)
    grad = backend.to_numpy(grad)
    assert not grad[~kept].any()
    np.testing.assert_allclose(grad[kept], backend.to_numpy(alone_grad), atol=1e-15)
    for options in ({}, {"class_weight": W5, "label_smoothing": 0.2}):
        loss = losses.SoftmaxCrossEntropy(ignore_index=3, **options)
        value, grad = run_loss(backend, loss, z, np.full(N, 3), np.float64)
        assert float(value) == 0 and not backend.to_numpy(grad).any()


def test_ignore_index_options_and_targets():
    loss = losses.get("cross_entropy", ignore_index=-100, label_smoothing=0.1)
    assert loss.op_options(Recorder(), np.float32)["ignore_index"] == -100
    assert loss.get_config()["ignore_index"] == -100
    assert losses.get(loss.get_config()).get_config() == loss.get_config()
    assert "ignore_index" not in CE3.get_config()  # configs saved before it match
    assert "ignore_index" not in CE3.op_options(Recorder(), np.float32)
    y = loss.prepare_targets(np.array([2.0, -100.0, 0.0]), 3, np.float32)
    assert y.dtype == np.int64 and y.tolist() == [2, -100, 0]


# ------------------------------------------------------------------ extremes
def extreme_logits(rng, scale, width=5):
    z = rng.standard_normal((N, width)) * scale
    z[0, :2] = [scale, -scale]  # one huge row
    return z


def check_extreme(backend, dtype, loss, ref, z, y, s=None):
    z = z.astype(dtype).astype(np.float64)
    s64 = None if s is None else s.astype(dtype).astype(np.float64)
    value, grad = run_loss(backend, loss, z, y, dtype, s)
    grad = backend.to_numpy(grad)
    assert np.isfinite(float(value)) and np.isfinite(grad).all()
    f = weighted(ref, s64)
    assert_close(float(value), f(z, y), dtype, REDUCTION_TOL)
    # central differences at |z| = 1e4 carry ~1e-6 of rounding: the README's
    # gradient-check tolerance
    numeric = numeric_grad(lambda v: f(v, y), z)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_cross_entropy_extreme_logits_labels(backend, dtype, rng, scale):
    z, y = extreme_logits(rng, scale), labels(rng)
    z[1, (y[1] + 1) % 5] = -np.inf  # a -inf logit that is not the label's
    loss = losses.SoftmaxCrossEntropy(class_weight=W5, temperature=2.0)
    ref = lambda z, y: ref_ce(z, y, W5, temperature=2.0)
    check_extreme(backend, dtype, loss, ref, z, y, sample_weight(rng))


@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_cross_entropy_extreme_logits_rows(backend, dtype, rng, scale):
    z, y = extreme_logits(rng, scale), probs(rng)
    z[1, 3] = -np.inf
    y[1, 3] = 0.0  # no target mass on the -inf logit: 0, not 0 * inf
    y[1] /= y[1].sum()
    loss = losses.SoftmaxCrossEntropy(class_weight=W5)
    check_extreme(backend, dtype, loss, lambda z, y: ref_ce(z, y, W5), z, y)


@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_binary_cross_entropy_extreme_logits(backend, dtype, rng, scale):
    z, y = extreme_logits(rng, scale, 3), onehot(rng)[:, :3]
    loss = losses.BinaryCrossEntropy([3.0, 0.5, 1.0], label_smoothing=0.1)
    ref = lambda z, t: ref_bce(z, t, [3.0, 0.5, 1.0], 0.1)
    check_extreme(backend, dtype, loss, ref, z, y, sample_weight(rng))


def test_cross_entropy_with_minus_inf_and_smoothing_is_infinite_like_torch(backend):
    z = np.array([[0.0, -np.inf, 1.0]])
    value, grad = run_loss(
        backend, losses.SoftmaxCrossEntropy(0.1), z, np.array([0]), "f8"
    )
    assert float(value) == np.inf and np.isfinite(backend.to_numpy(grad)).all()


@pytest.mark.parametrize("log_var", [-1e4, -100.0, 100.0, 1e4])
def test_gaussian_nll_is_finite_for_extreme_log_variance(backend, dtype, log_var):
    z = np.array([[0.5, log_var], [-1.0, log_var]])
    y = np.array([[1.5], [-1.0]])
    value, grad = run_loss(backend, losses.GaussianNLL(), z, y, dtype)
    assert np.isfinite(float(value)) and np.isfinite(backend.to_numpy(grad)).all()
    assert_close(float(value), weighted(ref_gaussian, None)(z, y), dtype, REDUCTION_TOL)


def test_mdn_is_finite_for_extreme_outputs(backend, dtype):
    z = np.array(
        [[1e4, -1e4, 0.0, 3e3, -50.0, 50.0], [0.0, 0.0, 1e3, -1e3, 40.0, -40.0]]
    )
    y = np.array([[0.0], [1.0]])
    value, grad = run_loss(backend, losses.mdn(2), z, y, dtype)
    assert np.isfinite(float(value)) and np.isfinite(backend.to_numpy(grad)).all()


# ------------------------------------------------------------------ distributions
def test_gaussian_predictive_reads_mean_and_variance():
    out = np.array([[1.0, -2.0, 0.0, np.log(4.0)], [3.0, 4.0, -40.0, 1e4]], np.float32)
    mean, var = losses.gaussian_nll.predictive(out)
    np.testing.assert_allclose(mean, [[1, -2], [3, 4]])
    np.testing.assert_allclose(var, [[1.0, 4.0], [1e-6, np.inf]], rtol=1e-6)
    assert mean.dtype == var.dtype == np.float64
    with pytest.raises(ValueError, match=r"\(n, 2k\)"):
        losses.GaussianNLL().predictive(out[:, :3])


def test_mdn_helpers_read_the_mixture(rng):
    mdn = losses.mdn(2)
    out = np.array(
        [[0.0, np.log(3.0), -1.0, 2.0, 5.0, 6.0, 0.0, 0.0, np.log(2.0), 0.0]]
    )
    weights, means, sigmas = mdn.split(out)
    np.testing.assert_allclose(weights, [[0.25, 0.75]])
    np.testing.assert_allclose(means, [[[-1.0, 2.0], [5.0, 6.0]]])
    np.testing.assert_allclose(sigmas, [[[1.0, 1.0], [2.0, 1.0]]])
    np.testing.assert_allclose(mdn.mean(out), [[3.5, 5.0]])
    # total variance: sum_k pi_k (sigma_k^2 + (mu_k - mean)^2)
    var0 = 0.25 * 1 + 0.75 * 4 + 0.25 * 4.5**2 + 0.75 * 1.5**2
    var1 = 0.25 * 1 + 0.75 * 1 + 0.25 * 3**2 + 0.75 * 1**2
    np.testing.assert_allclose(mdn.variance(out), [[var0, var1]])
    draws = mdn.sample(np.repeat(out, 20000, axis=0), np.random.default_rng(0))
    np.testing.assert_allclose(draws.mean(0), [3.5, 5.0], atol=0.06)
    np.testing.assert_allclose(draws.var(0), mdn.variance(out)[0], rtol=0.03)
    again = mdn.sample(out, np.random.default_rng(5))
    np.testing.assert_array_equal(again, mdn.sample(out, np.random.default_rng(5)))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        mdn.sample(out, 0)
    with pytest.raises(ValueError, match=r"K \(1 \+ 2d\) columns"):
        mdn.split(out[:, :9])


def test_point_estimates_are_the_predicted_means(backend):
    out = np.array([[1.0, 2.0, 0.3, 0.4]])
    mean = losses.GaussianNLL().point_estimate(backend, backend.asarray(out))
    np.testing.assert_array_equal(backend.to_numpy(mean), [[1.0, 2.0]])
    mdn_out = np.array([[0.0, np.log(3.0), -1.0, 5.0, 0.0, 0.0]])
    mean = losses.mdn(2).point_estimate(backend, backend.asarray(mdn_out))
    np.testing.assert_allclose(backend.to_numpy(mean), [[3.5]])
    raw = backend.asarray(out)
    assert losses.MeanSquaredError().point_estimate(backend, raw) is raw


# ------------------------------------------------------------------ the Loss contract
class Recorder:
    """A backend stand-in that records how a loss calls its op."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def asarray(self, x, dtype=None):
        return np.asarray(x, dtype=dtype)

    def __getattr__(self, op):
        def call(outputs, targets, **options):
            self.calls.append((op, options))
            return 0.0, outputs

        return call


def test_default_losses_call_their_op_with_outputs_and_targets_only():
    for name in losses.names():
        options = {"n_components": 2} if name == "mdn" else {}
        loss, backend = losses.get(name, **options), Recorder()
        loss(backend, np.zeros((2, 4)), np.zeros(2))
        assert backend.calls == [(loss.op, options)], name


def test_options_reach_the_op_as_device_arrays_of_the_outputs_dtype():
    loss, backend = losses.SoftmaxCrossEntropy(0.1, [1, 2], 2.0), Recorder()
    w = np.ones(2, np.float32)
    for _ in range(2):
        loss(backend, np.zeros((2, 2), np.float32), np.zeros(2, np.int64), w)
    (op, first), (_, second) = backend.calls
    assert op == "softmax_cross_entropy" and first["sample_weight"] is w
    assert first["class_weight"].dtype == np.float32
    np.testing.assert_array_equal(first["class_weight"], [1, 2])
    assert second["class_weight"] is first["class_weight"]  # copied once
    assert (first["label_smoothing"], first["temperature"]) == (0.1, 2.0)
    backend = Recorder()
    losses.BinaryCrossEntropy(2.0, 0.2)(backend, np.zeros((2, 3)), np.zeros((2, 3)))
    options = backend.calls[0][1]
    assert options["pos_weight"].tolist() == [2.0] and options["label_smoothing"] == 0.2


def test_links_and_tasks():
    assert losses.get("categorical_crossentropy").link == "softmax"
    assert losses.get("binary_crossentropy").link == "sigmoid"
    for name in ("mse", "mae", "huber", "gaussian_nll"):
        assert losses.get(name).link is None and losses.get(name).task == "regression"
    assert losses.mdn(2).link is None and losses.mdn(2).task == "regression"


ALIASES = {
    "cross_entropy": losses.SoftmaxCrossEntropy,
    "categorical_crossentropy": losses.SoftmaxCrossEntropy,
    "sparse_categorical_crossentropy": losses.SoftmaxCrossEntropy,
    "softmax_cross_entropy": losses.SoftmaxCrossEntropy,
    "bce": losses.BinaryCrossEntropy,
    "binary_crossentropy": losses.BinaryCrossEntropy,
    "mean_squared_error": losses.MeanSquaredError,
    "mean_absolute_error": losses.MeanAbsoluteError,
    "l1": losses.MeanAbsoluteError,
    "huber": losses.Huber,
    "gaussian_nll": losses.GaussianNLL,
}


def test_names_aliases_options_and_configs():
    for name, cls in ALIASES.items():
        assert type(losses.get(name)) is cls
    loss = losses.get("cross_entropy", label_smoothing=0.1, class_weight=[1, 2])
    assert repr(loss) == (
        "SoftmaxCrossEntropy(label_smoothing=0.1, class_weight=[1.0, 2.0], "
        "temperature=1.0)"
    )
    for other in (loss, losses.mdn(4, eps=1e-4), losses.BinaryCrossEntropy(2.0)):
        config = other.get_config()
        assert json.loads(json.dumps(config)) == config
        assert losses.get(config).get_config() == config
    assert losses.get(loss) is loss
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.get("hinge")
    with pytest.raises(TypeError, match="not with a Loss"):
        losses.get(loss, eps=1.0)
    with pytest.raises(TypeError, match="n_components"):
        losses.get("mdn")


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: losses.SoftmaxCrossEntropy(label_smoothing=-0.1),
            ValueError,
            r"label_smoothing must be in \[0, 1\], got -0.1",
        ),
        (
            lambda: losses.SoftmaxCrossEntropy(label_smoothing=1.5),
            ValueError,
            "label_smoothing",
        ),
        (
            lambda: losses.SoftmaxCrossEntropy(temperature=0),
            ValueError,
            "temperature must be in",
        ),
        (
            lambda: losses.SoftmaxCrossEntropy(temperature=np.nan),
            ValueError,
            "temperature",
        ),
        (lambda: losses.SoftmaxCrossEntropy(temperature="2"), TypeError, "temperature"),
        (
            lambda: losses.SoftmaxCrossEntropy(ignore_index=1.5),
            TypeError,
            "ignore_index must be None or an int, got 1.5",
        ),
        (
            lambda: losses.SoftmaxCrossEntropy(ignore_index=True),
            TypeError,
            "ignore_index",
        ),
        (
            lambda: losses.SoftmaxCrossEntropy(class_weight=[1, -1]),
            ValueError,
            r"class_weight must be a non-empty 1-D .* got \[1, -1\]",
        ),
        (
            lambda: losses.SoftmaxCrossEntropy(class_weight=[[1, 2]]),
            ValueError,
            "class_weight",
        ),
        (
            lambda: losses.SoftmaxCrossEntropy(class_weight=[]),
            ValueError,
            "class_weight",
        ),
        (
            lambda: losses.SoftmaxCrossEntropy(class_weight=["a"]),
            ValueError,
            "class_weight",
        ),
        (
            lambda: losses.SoftmaxCrossEntropy(class_weight=2.0),
            ValueError,
            "class_weight",
        ),
        (
            lambda: losses.BinaryCrossEntropy(pos_weight=-1),
            ValueError,
            "pos_weight must be a number or",
        ),
        (
            lambda: losses.BinaryCrossEntropy(pos_weight=[np.inf]),
            ValueError,
            "pos_weight",
        ),
        (
            lambda: losses.BinaryCrossEntropy(label_smoothing=2),
            ValueError,
            "label_smoothing",
        ),
        (lambda: losses.Huber(delta=0), ValueError, r"delta must be in \(0"),
        (lambda: losses.GaussianNLL(eps=0), ValueError, "eps must be in"),
        (
            lambda: losses.GaussianNLL(full="yes"),
            TypeError,
            "full must be True or False",
        ),
        (lambda: losses.mdn(0), ValueError, "n_components must be an int >= 1, got 0"),
        (lambda: losses.mdn(2.5), ValueError, "n_components"),
        (lambda: losses.mdn(2, eps=-1), ValueError, "eps"),
    ],
)
def test_hyperparameters_are_validated(make, error, message):
    with pytest.raises(error, match=message):
        make()


CE3 = losses.SoftmaxCrossEntropy()
BAD_TARGETS = [
    (CE3, 3, [0, 3, 1], LabelError, r"labels in \[0, 3\) .* got 3 at index 1"),
    (CE3, 3, [0.5, 1, 1], LabelError, "integer class labels, got 0.5 at index 0"),
    (CE3, 3, [[0.5, 0.6, -0.1], [1, 0, 0]], LabelError, r"got -0.1 at index \(0, 2\)"),
    (CE3, 3, [[1, 0, 0], [0.5, np.nan, 0.5]], LabelError, r"got nan at index \(1, 1\)"),
    (CE3, 3, [[1, 0, 0], [0.5, 0.4, 0]], LabelError, "row 1 sums to 0.9"),
    (CE3, 3, np.zeros((2, 4)), InvalidInputError, r"\(n, 3\), got shape \(2, 4\)"),
    (CE3, 3, np.zeros((2, 3, 1)), InvalidInputError, r"shape \(n,\)"),
    (CE3, 3, np.array(["a", "b"]), TypeError, "integer labels"),
    (
        losses.SoftmaxCrossEntropy(ignore_index=-100),
        3,
        [0, -100, 3],
        LabelError,
        r"labels in \[0, 3\) \(or ignore_index=-100\) .* got 3 at index 2",
    ),
    (
        losses.SoftmaxCrossEntropy(ignore_index=-100),
        3,
        [[1, 0, 0], [0, 1, 0]],
        InvalidInputError,
        r"ignore_index=-100 needs integer labels y of shape \(n,\)",
    ),
    (
        losses.SoftmaxCrossEntropy(class_weight=[1, 1]),
        3,
        [0, 1],
        ValueError,
        "class_weight has 2 entries but the model has 3 outputs",
    ),
    (
        losses.BinaryCrossEntropy(),
        2,
        [[0, 1.5], [0, 0]],
        LabelError,
        r"\[0, 1\], got 1.5 at index \(0, 1\)",
    ),
    (
        losses.BinaryCrossEntropy(),
        2,
        np.zeros((2, 3)),
        InvalidInputError,
        r"shape \(n, 2\)",
    ),
    (
        losses.BinaryCrossEntropy([1, 2, 3]),
        2,
        np.zeros((2, 2)),
        ValueError,
        "pos_weight has 3 entries",
    ),
    (
        losses.MeanSquaredError(),
        2,
        [[0, np.nan], [0, 0]],
        InvalidInputError,
        "contains NaN",
    ),
    (losses.Huber(), 1, [[0], [np.inf]], InvalidInputError, "infinity"),
    (
        losses.GaussianNLL(),
        3,
        np.zeros((2, 1)),
        InvalidInputError,
        "2 outputs per target",
    ),
    (
        losses.GaussianNLL(),
        4,
        np.zeros((2, 3)),
        InvalidInputError,
        r"\(n, 2\) for a model with 4 outputs",
    ),
    (
        losses.mdn(2),
        9,
        np.zeros((2, 2)),
        InvalidInputError,
        r"K \(1 \+ 2d\) = 10 outputs for targets with d = 2 columns, got a model with 9",
    ),
    (losses.mdn(2), 10, np.zeros((2, 2, 1)), InvalidInputError, "shape"),
]


@pytest.mark.parametrize("loss, width, y, error, message", BAD_TARGETS)
def test_bad_targets_name_what_is_wrong(loss, width, y, error, message):
    with pytest.raises(error, match=message):
        loss.prepare_targets(np.asarray(y), width, np.float32)


def test_targets_take_the_cheaper_form_with_torch_numbers():
    y = np.eye(3)[[2, 0, 1]]
    y.flags.writeable = False  # the caller's array is never changed
    labels_ = CE3.prepare_targets(y, 3, np.float32)
    assert labels_.dtype == np.int64 and labels_.tolist() == [2, 0, 1]
    rows = losses.SoftmaxCrossEntropy(class_weight=[1, 2, 3]).prepare_targets(
        y, 3, np.float32
    )
    assert rows.dtype == np.float32 and rows.shape == (3, 3)  # torch's rows rule
    soft = CE3.prepare_targets(np.full((2, 3), 1 / 3), 3, np.float64)
    assert soft.dtype == np.float64 and soft.shape == (2, 3)
    assert CE3.prepare_targets(np.array([2.0, 0.0]), 3, "f4").dtype == np.int64
    column = losses.BinaryCrossEntropy().prepare_targets(np.array([0, 1]), 1, "f4")
    assert column.shape == (2, 1) and column.dtype == np.float32


def test_prepare_sample_weight():
    w = losses.prepare_sample_weight(np.array([[1], [0], [2.5]]), 3, np.float32)
    assert w.dtype == np.float32 and w.tolist() == [1.0, 0.0, 2.5]
    for bad, message in [
        ([1.0, 2.0], r"shape \(3,\), one weight per sample, got shape \(2,\)"),
        ([1.0, -2.0, 1.0], "finite numbers >= 0, got -2.0 at index 1"),
        ([1.0, 1.0, np.nan], "got nan at index 2"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            losses.prepare_sample_weight(np.array(bad), 3, np.float32)
    with pytest.raises(TypeError, match="sample_weight must be numeric"):
        losses.prepare_sample_weight(np.array(["a", "b", "c"]), 3, np.float32)


def test_ops_reject_mismatched_weights_and_widths(backend):
    f32 = np.float32
    z, labels_ = (
        backend.asarray(np.zeros((4, 3), f32)),
        backend.asarray(np.zeros(4, int)),
    )
    cases = [
        (
            "softmax_cross_entropy",
            (z, labels_),
            {"sample_weight": np.ones(3, f32)},
            r"sample_weight of shape \(4,\) and dtype float32",
        ),
        (
            "softmax_cross_entropy",
            (z, labels_),
            {"class_weight": np.ones(3)},
            r"class_weight of shape \(3,\) and dtype float32, got shape \(3,\) and dtype float64",
        ),
        (
            "softmax_cross_entropy",
            (z, np.zeros((4, 3))),
            {},
            "float32 probability rows",
        ),
        (
            "binary_cross_entropy",
            (z, z),
            {"pos_weight": np.ones(2, f32)},
            "pos_weight of shape",
        ),
        ("mse", (z, z), {"sample_weight": np.ones((4, 1), f32)}, "sample_weight"),
        ("gaussian_nll", (z, np.zeros((4, 2), f32)), {}, r"outputs of shape \(4, 4\)"),
        (
            "mixture_density_nll",
            (z, np.zeros((4, 1), f32)),
            {"n_components": 2},
            r"outputs of shape \(4, 6\)",
        ),
    ]
    for op, args, options, message in cases:
        args = [backend.asarray(a) for a in args]
        options = {
            k: v if isinstance(v, int) else backend.asarray(v)
            for k, v in options.items()
        }
        with pytest.raises(ValueError, match=message):
            getattr(backend, op)(*args, **options)


# ------------------------------------------------------------------ end to end
def model_for(backend, loss, n_out, seed=0):
    layers = [gpunn.Dense(16, activation="tanh"), gpunn.Dense(n_out)]
    model = gpunn.Sequential(
        layers, input_dim=2, dtype="float64", backend=backend, seed=seed
    )
    model.compile(loss, gpunn.optim.Adam(0.02), metrics=())
    return model


def test_cross_entropy_trains_on_probability_rows_with_options(backend, rng):
    X = rng.standard_normal((300, 2))
    y = np.eye(3)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    loss = losses.SoftmaxCrossEntropy(label_smoothing=0.1, class_weight=[1, 2, 1])
    model = model_for(backend, loss, 3)
    model.compile(loss, gpunn.optim.Adam(0.02), metrics=("accuracy",))
    history = model.fit(X, y, epochs=15, batch_size=32, verbose=0).history
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["accuracy"][-1] > 0.85


def test_gaussian_nll_model_learns_mean_and_noise(backend, rng):
    X = rng.uniform(-1, 1, (512, 2))
    noise = np.where(X[:, :1] > 0, 0.5, 0.05)
    y = X[:, :1] + X[:, 1:] + noise * rng.standard_normal((512, 1))
    model = model_for(backend, "gaussian_nll", 2)
    history = model.fit(X, y, epochs=25, batch_size=32, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 0.5
    mean, var = losses.gaussian_nll.predictive(model.predict(X))
    wide, narrow = var[X[:, 0] > 0.2].mean(), var[X[:, 0] < -0.2].mean()
    assert wide > 10 * narrow  # the predicted noise follows the true noise
    model.compile("gaussian_nll", "adam", metrics=("mse",))
    expected = ((mean - y) ** 2).mean()
    assert model.evaluate(X, y)["mse"] == pytest.approx(expected, rel=1e-10)


def test_mdn_model_learns_a_bimodal_target(backend, rng):
    X = rng.uniform(-1, 1, (512, 2))
    y = np.where(rng.random((512, 1)) < 0.5, 1.0, -1.0) * (
        1 + X[:, :1]
    ) + 0.05 * rng.standard_normal((512, 1))
    mdn = losses.mdn(2)
    model = model_for(backend, mdn, 6)
    history = model.fit(X, y, epochs=25, batch_size=32, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 1.0
    weights = mdn.split(model.predict(X))[0]
    assert (np.abs(weights - 0.5) < 0.2).mean() > 0.9  # two equal modes
    model.compile(mdn, "adam", metrics=("mae",))
    expected = np.abs(mdn.mean(model.predict(X)) - y).mean()
    assert model.evaluate(X, y)["mae"] == pytest.approx(expected, rel=1e-10)


class _WrongWeightedMSE(losses.MeanSquaredError):
    """Ignores the sample weights in its gradient: gradcheck must catch it."""

    def __call__(self, backend, outputs, targets, sample_weight=None):
        value, _ = super().__call__(backend, outputs, targets, sample_weight)
        return value, super().__call__(backend, outputs, targets)[1]


def test_gradcheck_catches_a_wrong_loss_gradient(rng):
    z, y = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    assert gpunn.gradcheck(_WrongWeightedMSE(), z, y)  # right without weights
    with pytest.raises(gpunn.GradcheckError, match="loss mse"):
        gpunn.gradcheck(_WrongWeightedMSE(), z, y, sample_weight=rng.uniform(0, 2, 5))
    with pytest.raises(TypeError, match="sample_weight for a loss only"):
        gpunn.gradcheck(gpunn.Dense(2), z, sample_weight=np.ones(5))
