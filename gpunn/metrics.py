"""Metrics reported by ``fit`` and ``evaluate``: each batch adds a device-side sum, and
the host reads the totals once per epoch (or when a progress bar refreshes)."""

from __future__ import annotations


class Metric:
    """A named metric: ``batch_sum(backend, outputs, targets)`` returns a 0-d device
    array; the metric's value is the sum over batches divided by ``count(targets)``."""

    name = ""

    def batch_sum(self, backend, outputs, targets):
        raise NotImplementedError

    def count(self, targets) -> int:
        return targets.size


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

    def batch_sum(self, backend, outputs, targets):
        return backend.count_correct(outputs, targets, self.task)


class MeanAbsoluteError(Metric):
    name = "mae"

    def batch_sum(self, backend, outputs, targets):
        return backend.xp.abs(outputs - targets).sum()


class MeanSquaredError(Metric):
    name = "mse"

    def batch_sum(self, backend, outputs, targets):
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
