"""Metrics reported by ``fit`` and ``evaluate``.

Each batch adds a small vector of sufficient statistics on the device
(:meth:`Metric.batch_stats`); the host sums them once per epoch (or when a progress bar
redraws) and turns the totals into the metric's value with :meth:`Metric.result`. So a
metric like macro F1 or R^2 is exact over the whole pass, not a mean of batch values.

Classification metrics see the loss's input: logits (the final softmax/sigmoid is
fused into the loss), which give the same argmax and the same ``> 0.5`` decisions.
"""

from __future__ import annotations

import numpy as np


class Metric:
    """A named metric over one pass.

    ``batch_stats(backend, outputs, targets)`` returns a 0-d or 1-D device array of
    sums for one batch; ``result(totals, n_samples)`` turns the element-wise sum of
    those arrays over the pass (a host float64 array) into the value.
    """

    name = ""

    def batch_stats(self, backend, outputs, targets):
        raise NotImplementedError

    def result(self, totals: np.ndarray, n_samples: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    """Share of correct predictions: argmax vs label for ``softmax_cross_entropy``,
    ``logit > 0`` vs ``target > 0.5`` per element for ``binary_cross_entropy``."""

    name = "accuracy"

    def __init__(self, task: str):
        if task not in ("multiclass", "binary"):
            raise ValueError(
                "metric 'accuracy' needs a classification loss "
                f"(softmax_cross_entropy or binary_cross_entropy), got a {task} loss"
            )
        self.task = task
        self._per_sample = 1

    def batch_stats(self, backend, outputs, targets):
        self._per_sample = 1 if self.task == "multiclass" else outputs.shape[1]
        return backend.count_correct(outputs, targets, self.task)

    def result(self, totals, n_samples):
        return float(totals / (n_samples * self._per_sample))


class MeanAbsoluteError(Metric):
    """Mean over all elements of ``|outputs - targets|``."""

    name = "mae"

    def batch_stats(self, backend, outputs, targets):
        self._width = outputs.shape[1]
        return backend.xp.abs(outputs - targets).sum()

    def result(self, totals, n_samples):
        return float(totals / (n_samples * self._width))


class MeanSquaredError(MeanAbsoluteError):
    """Mean over all elements of ``(outputs - targets)**2``."""

    name = "mse"

    def batch_stats(self, backend, outputs, targets):
        self._width = outputs.shape[1]
        diff = outputs - targets
        return (diff * diff).sum()


def get(name, task: str) -> Metric:
    """Returns the metric for ``name`` given the loss's task."""
    if isinstance(name, Metric):
        return name
    if name in ("accuracy", "acc"):
        return Accuracy(task)
    if name in ("mae", "mse") and task == "regression":
        return MeanAbsoluteError() if name == "mae" else MeanSquaredError()
    raise ValueError(
        "metrics must name 'accuracy' (classification losses) or 'mae'/'mse' "
        f"(the mse loss), got {name!r} for a {task} loss"
    )
