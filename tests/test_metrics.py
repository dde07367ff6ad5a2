"""Metrics by name: exact pass-level values from summed batch statistics over uneven
batches, against float64 formulas written here (and scikit-learn when it is
installed), on every backend; validation against the loss's task; use in a model."""

import numpy as np
import pytest

import gpunn
from gpunn import losses, metrics

N, C = 97, 6
SIZES = (13, 1, 29, 7, 47)  # uneven batches, summing to N


def pass_value(backend, metric, outputs, targets, dtype=np.float64):
    """One pass over uneven batches, summed on the host as ``fit`` does."""
    stats, start = [], 0
    for size in SIZES:
        out = backend.asarray(outputs[start : start + size].astype(dtype))
        tgt = targets[start : start + size]
        tgt = backend.asarray(tgt.astype(dtype) if tgt.dtype.kind == "f" else tgt)
        stats.append(metric.batch_stats(backend, out, tgt))
        start += size
    assert start == len(outputs)
    totals = backend.to_numpy(backend.xp.stack(stats)).astype(np.float64).sum(axis=0)
    return metric.result(totals, len(outputs))


@pytest.fixture
def multiclass(rng):
    z = rng.standard_normal((N, C)) * 2
    y = rng.integers(0, C - 1, N)  # class C - 1 never a label
    z[:5, C - 1] = 10.0  # ... but predicted 5 times
    z[5:9] = 0.0  # all tied rows
    return z, y


@pytest.fixture
def binary(rng):
    z = rng.standard_normal((N, 3)) * 2
    t = (rng.random((N, 3)) < [0.3, 0.6, 0.0]).astype(float)  # column 2: no positives
    z[:, 2] = -abs(z[:, 2])  # ... and none predicted
    return z, t


@pytest.fixture
def regression(rng):
    y = rng.standard_normal((N, 2)) * [1.0, 5.0] + [0.0, 3.0]
    return y + rng.standard_normal((N, 2)), y


# ------------------------------------------------------------------ references
def macro(tp, pred, actual, kind, present):
    scores = []
    for c in present:
        num, den = {
            "precision": (tp[c], pred[c]),
            "recall": (tp[c], actual[c]),
            "f1": (2 * tp[c], pred[c] + actual[c]),
        }[kind]
        scores.append(num / den if den else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def ref_multiclass(z, y, kind):
    n_classes = z.shape[1]
    counts = np.zeros((3, n_classes))
    for p, t in zip((int(np.argmax(row)) for row in z), y):
        counts[:, p] += [p == t, 1, 0]
        counts[2, t] += 1
    present = [c for c in range(n_classes) if counts[1, c] + counts[2, c]]
    return macro(*counts, kind, present)


def ref_binary(z, t, kind):
    pred, true = z > 0, t > 0.5
    tp = (pred & true).sum(0)
    return macro(tp, pred.sum(0), true.sum(0), kind, range(z.shape[1]))


def ref_r2(p, y):
    scores = []
    for j in range(y.shape[1]):
        ss_res = sum((a - b) ** 2 for a, b in zip(y[:, j], p[:, j]))
        mean = sum(y[:, j]) / len(y)
        ss_tot = sum((a - mean) ** 2 for a in y[:, j])
        scores.append(
            (1.0 if ss_res == 0 else 0.0) if ss_tot == 0 else 1 - ss_res / ss_tot
        )
    return float(np.mean(scores))


# ------------------------------------------------------------------ classification
def test_accuracy_and_top_k(backend, dtype, multiclass):
    z, y = multiclass
    acc = metrics.get("accuracy", "cross_entropy")
    assert pass_value(backend, acc, z, y, dtype) == pytest.approx(
        np.mean(z.argmax(1) == y)
    )
    rows = np.eye(C)[y] * 0.9 + 0.1 / C  # probability rows: their argmax is the label
    assert pass_value(backend, acc, z, rows, dtype) == pass_value(
        backend, acc, z, y, dtype
    )
    for k in (1, 2, 3, C):
        top = metrics.get(metrics.TopKAccuracy(k), "cross_entropy")
        beaten = [(row > row[label]).sum() for row, label in zip(z, y)]
        expected = np.mean([b < k for b in beaten])  # ties count for the label
        assert pass_value(backend, top, z, y, dtype) == pytest.approx(expected)
    assert metrics.get("top_k_accuracy", "cross_entropy").k == 5


def test_binary_accuracy(backend, dtype, binary):
    z, t = binary
    expected = np.mean((z > 0) == (t > 0.5))
    for name in ("accuracy", "binary_accuracy"):
        metric = metrics.get(name, "binary_crossentropy")
        assert pass_value(backend, metric, z, t, dtype) == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["precision", "recall", "f1"])
def test_precision_recall_f1(backend, dtype, multiclass, binary, kind):
    z, y = multiclass
    metric = metrics.get(kind, "cross_entropy")
    assert pass_value(backend, metric, z, y, dtype) == pytest.approx(
        ref_multiclass(z, y, kind)
    )
    z, t = binary
    metric = metrics.get(kind, losses.BinaryCrossEntropy())
    assert pass_value(backend, metric, z, t, dtype) == pytest.approx(
        ref_binary(z, t, kind)
    )
    one = pass_value(backend, metric, z[:, :1], t[:, :1], dtype)
    assert one == pytest.approx(ref_binary(z[:, :1], t[:, :1], kind))


def test_class_counts_zero_division_is_zero(backend):
    metric = metrics.get("precision", "bce")
    z, t = np.full((4, 1), -1.0), np.ones((4, 1))  # nothing predicted positive
    stats = metric.batch_stats(backend, backend.asarray(z), backend.asarray(t))
    assert backend.to_numpy(stats).tolist() == [0, 0, 4]
    assert metric.result(backend.to_numpy(stats).astype(float), 4) == 0.0


# ------------------------------------------------------------------ regression
def test_mse_mae_r2(backend, dtype, regression):
    p, y = regression
    p, y = (a.astype(dtype).astype(np.float64) for a in (p, y))
    values = {
        "mse": ((p - y) ** 2).mean(),
        "mae": np.abs(p - y).mean(),
        "r2": ref_r2(p, y),
    }
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for name, expected in values.items():
        metric = metrics.get(name, "mse")
        assert pass_value(backend, metric, p, y, dtype) == pytest.approx(
            expected, rel=rtol
        )


def test_r2_is_exact_for_targets_far_from_zero(backend, rng):
    y = 1e6 + 1e-2 * rng.standard_normal((N, 1))
    p = y + 1e-3 * rng.standard_normal((N, 1))
    r2 = pass_value(backend, metrics.get("r2", "mse"), p, y)
    assert r2 == pytest.approx(ref_r2(p, y), rel=1e-9)


def test_r2_of_a_constant_target_column(backend):
    y = np.hstack([np.full((N, 1), 2.0), np.arange(N, dtype=float)[:, None]])
    p = y.copy()
    r2 = metrics.get("r2", "mse")
    assert pass_value(backend, r2, p, y) == 1.0
    p[0, 0] = 2.5  # constant column predicted wrongly: 0, as scikit-learn
    assert pass_value(backend, r2, p, y) == pytest.approx(0.5)


def test_regression_metrics_use_the_predicted_mean(backend, rng):
    y = rng.standard_normal((N, 2))
    mean = y + rng.standard_normal((N, 2))
    outputs = np.hstack([mean, rng.standard_normal((N, 2))])  # [mean | log_var]
    for name, expected in [("mse", ((mean - y) ** 2).mean()), ("r2", ref_r2(mean, y))]:
        metric = metrics.get(name, "gaussian_nll")
        assert pass_value(backend, metric, outputs, y) == pytest.approx(expected)
    mdn = losses.mdn(3)
    outputs = rng.standard_normal((N, 3 * (1 + 2 * 2)))
    expected = np.abs(mdn.mean(outputs) - y).mean()
    metric = metrics.get("mae", mdn)
    assert pass_value(backend, metric, outputs, y) == pytest.approx(expected)


# ------------------------------------------------------------------ scikit-learn
def test_classification_metrics_match_scikit_learn(backend, multiclass, binary):
    skm = pytest.importorskip("sklearn.metrics")
    z, y = multiclass
    pred = z.argmax(1)
    assert pass_value(
        backend, metrics.get("accuracy", "cross_entropy"), z, y
    ) == pytest.approx(skm.accuracy_score(y, pred))
    for name, fn in [
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ]:
        expected = fn(y, pred, average="macro", zero_division=0)
        assert pass_value(
            backend, metrics.get(name, "cross_entropy"), z, y
        ) == pytest.approx(expected)
        zb, tb = binary
        expected = fn(tb[:, 0], zb[:, 0] > 0, zero_division=0)
        assert pass_value(
            backend, metrics.get(name, "bce"), zb[:, :1], tb[:, :1]
        ) == pytest.approx(expected)
        expected = fn(tb, zb > 0, average="macro", zero_division=0)
        assert pass_value(backend, metrics.get(name, "bce"), zb, tb) == pytest.approx(
            expected
        )
    untied = z[9:]  # top_k_accuracy_score breaks ties differently
    expected = skm.top_k_accuracy_score(y[9:], untied, k=3, labels=np.arange(C))
    top = metrics.get(metrics.TopKAccuracy(3), "cross_entropy")
    stats = top.batch_stats(backend, backend.asarray(untied), backend.asarray(y[9:]))
    assert top.result(backend.to_numpy(stats), len(untied)) == pytest.approx(expected)


def test_regression_metrics_match_scikit_learn(backend, regression):
    skm = pytest.importorskip("sklearn.metrics")
    p, y = regression
    for name, fn in [
        ("mse", skm.mean_squared_error),
        ("mae", skm.mean_absolute_error),
        ("r2", skm.r2_score),
    ]:
        assert pass_value(backend, metrics.get(name, "mse"), p, y) == pytest.approx(
            fn(y, p)
        )


# ------------------------------------------------------------------ names and tasks
@pytest.mark.parametrize(
    "name, loss, message",
    [
        ("accuracy", "mse", "needs a classification loss"),
        (
            "f1",
            "gaussian_nll",
            "'f1' needs a classification loss .* got the gaussian_nll loss",
        ),
        ("top_k_accuracy", "bce", "needs a multiclass loss"),
        ("binary_accuracy", "cross_entropy", "needs a binary loss"),
        (
            "r2",
            "cross_entropy",
            r"needs a regression loss .* softmax_cross_entropy loss \(multiclass\)",
        ),
        ("mse", "bce", "needs a regression loss"),
        ("f2", "cross_entropy", "metrics must name one of"),
        (5, "mse", "metrics must name one of"),
    ],
)
def test_metrics_are_checked_against_the_loss(name, loss, message):
    with pytest.raises(ValueError, match=message):
        metrics.get(name, loss)


def test_names_aliases_and_instances():
    assert metrics.names() == sorted(
        [
            "accuracy",
            "binary_accuracy",
            "top_k_accuracy",
            "precision",
            "recall",
            "f1",
            "mse",
            "mae",
            "r2",
        ]
    )
    aliases = {
        "acc": "accuracy",
        "sparse_categorical_accuracy": "accuracy",
        "top_k_categorical_accuracy": "top_k_accuracy",
        "f1_score": "f1",
        "r2_score": "r2",
    }
    for alias, name in aliases.items():
        loss = "mse" if name == "r2" else "cross_entropy"
        assert metrics.get(alias, loss).name == name
    top = metrics.TopKAccuracy(2)
    assert (
        metrics.get(top, losses.SoftmaxCrossEntropy()) is top
        and repr(top) == "TopKAccuracy(k=2)"
    )
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            metrics.TopKAccuracy(bad)


def test_model_reports_metrics_by_name(backend, rng):
    X = rng.standard_normal((N, 4))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    model = gpunn.Sequential(
        [gpunn.Dense(8, activation="tanh"), gpunn.Dense(3)],
        input_dim=4,
        dtype="float64",
        backend=backend,
        seed=0,
    )
    names = ["accuracy", "top_k_accuracy", "precision", "recall", "f1"]
    model.compile("sparse_categorical_crossentropy", "adam", metrics=names)
    history = model.fit(X, y, epochs=2, batch_size=10, verbose=0).history
    assert set(names) <= set(history)
    logs, z = model.evaluate(X, y, batch_size=13), model.predict(X)
    assert logs["accuracy"] == pytest.approx(np.mean(z.argmax(1) == y))
    assert logs["top_k_accuracy"] == 1.0  # k=5 >= 3 classes
    for kind in ("precision", "recall", "f1"):
        assert logs[kind] == pytest.approx(ref_multiclass(z, y, kind))
    model.compile("mse", "adam", metrics=("mse", "mae", "r2"))
    target = rng.standard_normal((N, 3))
    logs = model.evaluate(X, target, batch_size=13)
    p = model.predict(X)
    assert logs["r2"] == pytest.approx(ref_r2(p, target))
    assert logs["mse"] == pytest.approx(logs["loss"])


def test_macro_averages_skip_classes_absent_from_labels_and_predictions(backend):
    z = np.eye(4)[[0, 1, 2, 2]]  # class 3: never predicted, never a label
    y = np.array([0, 1, 1, 2])
    expected = {"precision": (1 + 1 + 0.5) / 3, "recall": (1 + 0.5 + 1) / 3}
    expected["f1"] = (1 + 2 / 3 + 2 / 3) / 3
    for name, value in expected.items():
        metric = metrics.get(name, "cross_entropy")
        stats = metric.batch_stats(backend, backend.asarray(z), backend.asarray(y))
        assert metric.result(backend.to_numpy(stats), 4) == pytest.approx(value)


def test_a_task_string_still_names_the_loss_kind():
    assert metrics.get("accuracy", "multiclass").loss.task == "multiclass"
    assert metrics.get("binary_accuracy", "binary").loss.task == "binary"
    assert metrics.get("r2", "regression").loss.task == "regression"


def test_fit_with_ignored_labels_scores_only_the_kept_rows():
    """ignore_index rows add nothing to the loss and are left out of accuracy and
    top-k accuracy (their denominators count only the kept rows)."""
    import gpunn
    from gpunn.layers import Dense

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    y = rng.integers(0, 3, 40)
    y_ignored = y.copy()
    y_ignored[::4] = -100
    model = gpunn.Sequential([Dense(3)], input_dim=4, backend="cpu", seed=0)
    loss = gpunn.losses.SoftmaxCrossEntropy(ignore_index=-100)
    model.compile(loss, "sgd", metrics=["accuracy", "top_k_accuracy"])
    kept = y_ignored != -100
    result = model.evaluate(X, y_ignored)
    predicted = model.predict(X).argmax(axis=1)
    assert result["accuracy"] == pytest.approx(np.mean(predicted[kept] == y[kept]))
    full = model.evaluate(X[kept], y[kept])
    assert result["loss"] == pytest.approx(full["loss"])
    assert result["top_k_accuracy"] == pytest.approx(full["top_k_accuracy"])
    model.fit(X, y_ignored, epochs=1, batch_size=8, verbose=0)
