"""Metrics reported by ``fit`` and ``evaluate``, by name.

Each batch adds a small vector of sufficient statistics on the device
(:meth:`Metric.batch_stats`); the host sums them once per epoch (or when a progress bar
redraws) and turns the totals into the metric's value with :meth:`Metric.result`. So a
metric like macro F1 or R^2 is exact over the whole pass, not a mean of batch values.

Metrics see what the loss sees: logits for classification (the final softmax/sigmoid
is fused into the loss), which give the same argmax and the same ``> 0.5`` decisions;
regression metrics compare the loss's point estimate (the predicted mean for
``gaussian_nll`` and ``mdn``) with the targets.

| name (aliases) | losses | value |
|---|---|---|
| ``"accuracy"`` (``"acc"``) | classification | argmax == label; per element ``logit > 0`` == ``target > 0.5`` for binary |
| ``"binary_accuracy"`` | binary | per element ``logit > 0`` == ``target > 0.5`` |
| ``"top_k_accuracy"`` (:class:`TopKAccuracy`, k=5) | multiclass | label among the k highest scores |
| ``"precision"``, ``"recall"``, ``"f1"`` | classification | macro over classes (multiclass), the positive class (one binary output) |
| ``"mse"``, ``"mae"``, ``"r2"`` | regression | as scikit-learn, uniform average over outputs |
"""

from __future__ import annotations

import numpy as np

from gpunn import losses as losses_lib
from gpunn.checks import check_int
from gpunn.errors import ArgumentError

CLASSIFICATION = ("multiclass", "binary")


class Metric:
    """A named metric over one pass.

    ``bind(loss)`` checks that the metric applies to the loss (ValueError otherwise)
    and keeps it; ``batch_stats(backend, outputs, targets)`` returns a 0-d or 1-D
    device array of sums for one batch; ``result(totals, n_samples)`` turns the
    element-wise sum of those arrays over the pass (a host float64 array) into the
    value.
    """

    name = ""
    tasks = CLASSIFICATION + ("regression",)  # the loss tasks it applies to

    def bind(self, loss) -> Metric:
        if loss.task not in self.tasks:
            kinds = {
                CLASSIFICATION: "a classification loss (softmax_cross_entropy or "
                "binary_cross_entropy)",
                ("multiclass",): "a multiclass loss (softmax_cross_entropy)",
                ("binary",): "a binary loss (binary_cross_entropy)",
                ("regression",): "a regression loss (mse, mae, huber, gaussian_nll, "
                "mdn)",
            }
            raise ArgumentError(
                f"metric {self.name!r} needs {kinds[self.tasks]}, got the "
                f"{loss.name} loss ({loss.task})"
            )
        self.loss = loss
        return self

    def prepare(self, backend, targets) -> None:
        """Called once per dataset with all its targets (on every rank alike) before
        any :meth:`batch_stats`; a metric may fix constants there. Default: none."""

    def batch_stats(self, backend, outputs, targets):
        raise NotImplementedError

    def result(self, totals: np.ndarray, n_samples: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    """Share of correct predictions: argmax vs label (multiclass), or per element
    ``logit > 0`` vs ``target > 0.5`` (binary)."""

    name, tasks = "accuracy", CLASSIFICATION

    def batch_stats(self, backend, outputs, targets):
        return backend.count_correct(outputs, targets, self.loss.task)

    def result(self, totals, n_samples):
        correct, scored = totals  # ignored labels are not scored
        return float(correct / scored) if scored else float("nan")


class BinaryAccuracy(Accuracy):
    """Per element ``logit > 0`` vs ``target > 0.5`` (Keras' ``binary_accuracy`` on
    logits)."""

    name, tasks = "binary_accuracy", ("binary",)


class TopKAccuracy(Metric):
    """Share of samples whose label is among the ``k`` highest scores (a label tied
    with the k-th score counts, as TensorFlow's ``in_top_k``; scikit-learn's
    ``top_k_accuracy_score`` without ties).

    Args:
        k: how many top scores count, >= 1. Default: 5.
    """

    name, tasks = "top_k_accuracy", ("multiclass",)

    def __init__(self, k: int = 5):
        self.k = check_int("k", k, 1)

    def batch_stats(self, backend, outputs, targets):
        return backend.count_top_k(outputs, targets, self.k)

    def result(self, totals, n_samples):
        hits, scored = totals  # ignored labels are not scored
        return float(hits / scored) if scored else float("nan")

    def __repr__(self) -> str:
        return f"TopKAccuracy(k={self.k})"


class _ClassCounts(Metric):
    """Precision / recall / F1 from per-class ``[tp | predicted | actual]`` counts,
    with scikit-learn's ``zero_division=0``: macro over the classes present in the
    labels or the predictions (multiclass), the positive class for one binary
    output, macro over all outputs for several binary outputs."""

    tasks = CLASSIFICATION

    def batch_stats(self, backend, outputs, targets):
        return backend.class_counts(outputs, targets, self.loss.task)

    def result(self, totals, n_samples):
        tp, predicted, actual = np.asarray(totals, dtype=np.float64).reshape(3, -1)
        scores = _ratio(*self._fraction(tp, predicted, actual))
        if self.loss.task == "multiclass":
            scores = scores[(predicted + actual) > 0]
        return float(scores.mean()) if scores.size else 0.0


def _ratio(num, den):
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


class Precision(_ClassCounts):
    """``tp / (tp + fp)``, macro over classes (see :class:`_ClassCounts`)."""

    name = "precision"

    def _fraction(self, tp, predicted, actual):
        return tp, predicted


class Recall(_ClassCounts):
    """``tp / (tp + fn)``, macro over classes (see :class:`_ClassCounts`)."""

    name = "recall"

    def _fraction(self, tp, predicted, actual):
        return tp, actual


class F1(_ClassCounts):
    """``2 tp / (2 tp + fp + fn)``, macro over classes (see :class:`_ClassCounts`)."""

    name = "f1"

    def _fraction(self, tp, predicted, actual):
        return 2 * tp, predicted + actual


class MeanAbsoluteError(Metric):
    """Mean over all elements of ``|prediction - targets|``."""

    name, tasks = "mae", ("regression",)
    _width = 1

    def batch_stats(self, backend, outputs, targets):
        diff = self.loss.point_estimate(backend, outputs) - targets
        self._width = targets.shape[1]
        return self._sum(backend, diff)

    def _sum(self, backend, diff):
        return backend.xp.abs(diff).sum(dtype=np.float64)

    def result(self, totals, n_samples):
        return float(totals / max(n_samples * self._width, 1))


class MeanSquaredError(MeanAbsoluteError):
    """Mean over all elements of ``(prediction - targets)**2``."""

    name = "mse"

    def _sum(self, backend, diff):
        return (diff * diff).sum(dtype=np.float64)


class R2(Metric):
    """Coefficient of determination ``1 - SS_res / SS_tot`` per output, averaged
    uniformly over outputs (scikit-learn's ``r2_score``; an output with constant
    targets scores 1 if predicted exactly, else 0).

    The per-batch statistics are sums about a fixed center (the mean of the first
    dataset's targets, the same on every rank and at every resume), so ``SS_tot``
    over the pass is exact up to rounding."""

    name, tasks = "r2", ("regression",)

    def prepare(self, backend, targets) -> None:
        center = getattr(self, "_center", None)
        if (center is None or center[0] is not backend) and len(targets):
            self._center = (backend, targets.mean(axis=0, dtype=np.float64))

    def batch_stats(self, backend, outputs, targets):
        self.prepare(backend, targets)  # without a prepared dataset: this batch's
        center = getattr(self, "_center", None)
        if center is None or center[0] is not backend:  # no rows yet: any center
            center = (backend, backend.xp.zeros(targets.shape[1:], np.float64))
        prediction = self.loss.point_estimate(backend, outputs)
        return backend.r2_sums(prediction, targets, center[1])

    def result(self, totals, n_samples):
        ss_res, s1, s2 = np.asarray(totals, dtype=np.float64)
        ss_tot = np.maximum(s2 - s1 * s1 / max(n_samples, 1), 0.0)
        constant = ss_tot <= 1e-12 * np.maximum(s2, np.finfo(np.float64).tiny)
        scores = np.where(
            constant,
            np.where(ss_res == 0, 1.0, 0.0),
            1 - ss_res / np.where(constant, 1.0, ss_tot),
        )
        return float(scores.mean())


_BY_NAME = {
    "accuracy": Accuracy,
    "binary_accuracy": BinaryAccuracy,
    "top_k_accuracy": TopKAccuracy,
    "precision": Precision,
    "recall": Recall,
    "f1": F1,
    "mse": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "r2": R2,
}
_ALIASES = {
    "acc": "accuracy",
    "categorical_accuracy": "accuracy",
    "sparse_categorical_accuracy": "accuracy",
    "top_k_categorical_accuracy": "top_k_accuracy",
    "sparse_top_k_categorical_accuracy": "top_k_accuracy",
    "f1_score": "f1",
    "mean_squared_error": "mse",
    "mean_absolute_error": "mae",
    "r2_score": "r2",
}


def names() -> list[str]:
    """The canonical metric names (aliases are accepted by :func:`get` too)."""
    return sorted(_BY_NAME)


_TASK_LOSSES = {
    "multiclass": "softmax_cross_entropy",
    "binary": "bce",
    "regression": "mse",
}


def get(metric, loss) -> Metric:
    """Returns the metric for a name (or alias) or a :class:`Metric` instance, bound
    to ``loss``: a Loss, a loss name, or (as before losses had point estimates) a
    task ``"multiclass"`` / ``"binary"`` / ``"regression"``. Raises ValueError for an
    unknown name or a metric that does not apply to the loss's task."""
    loss = losses_lib.get(
        _TASK_LOSSES.get(loss, loss) if isinstance(loss, str) else loss
    )
    if isinstance(metric, Metric):
        return metric.bind(loss)
    cls = (
        _BY_NAME.get(_ALIASES.get(metric, metric)) if isinstance(metric, str) else None
    )
    if cls is None:
        raise ArgumentError(
            f"metrics must name one of {names()} (or an alias: {sorted(_ALIASES)}) "
            f"or be a Metric, got {metric!r}"
        )
    return cls().bind(loss)
