"""Metric reductions of the reference backend: counts and sums that stay on the device
until an epoch's metrics are read.

Mixed into :class:`~gpunn.backends.numpy_backend.NumpyBackend` (see its module for the
conventions), written once against ``self.xp``.
"""

from __future__ import annotations


class MetricOps:
    """The per-batch reductions behind :mod:`gpunn.metrics`; needs ``self.xp``."""

    def count_correct(self, outputs, targets, kind: str):
        """Number of correct predictions as a 0-d device array. ``kind`` is
        ``"multiclass"`` (argmax vs integer labels, or vs the argmax of probability
        rows), ``"binary"`` (logit > 0 vs target > 0.5, element-wise)."""
        if kind == "multiclass":
            return (outputs.argmax(axis=1) == _labels(targets)).sum()
        return ((outputs > 0) == (targets > 0.5)).sum()

    def count_top_k(self, outputs, targets, k: int):
        """Rows whose label's score is beaten by fewer than ``k`` other scores (ties
        count for the label, as TensorFlow's ``in_top_k``), as a 0-d device array.
        Shape: outputs ``(batch, C)``, targets labels ``(batch,)`` or rows."""
        labels = _labels(targets)
        picked = self.xp.take_along_axis(outputs, labels[:, None], axis=1)
        return ((outputs > picked).sum(axis=1) < k).sum()

    def class_counts(self, outputs, targets, kind: str):
        """Per class, as one int64 device array ``(3 * C,)``: ``[true positives |
        predicted | actual]``. ``"multiclass"``: argmax vs labels, ``C`` classes;
        ``"binary"``: per output column, logit > 0 vs target > 0.5."""
        xp = self.xp
        if kind == "binary":
            pred, true = outputs > 0, targets > 0.5
            counts = [(pred & true).sum(axis=0), pred.sum(axis=0), true.sum(axis=0)]
            return xp.concatenate(counts).astype(xp.int64)
        c = outputs.shape[1]
        pred, true = outputs.argmax(axis=1), _labels(targets)
        hits = xp.where(pred == true, true, c)  # misses land in an extra bin
        counts = [
            xp.bincount(hits, minlength=c + 1)[:c],
            xp.bincount(pred, minlength=c),
            xp.bincount(true, minlength=c),
        ]
        return xp.concatenate(counts).astype(xp.int64)

    def r2_sums(self, outputs, targets, center):
        """Per output column, in float64: ``[sum (y - p)^2, sum (y - c), sum (y -
        c)^2]`` as a ``(3, k)`` device array. ``center`` ``(k,)`` is any fixed shift
        (e.g. the first batch's mean): summed over batches, it gives the total sum of
        squares ``S2 - S1^2 / n`` without cancellation."""
        xp = self.xp
        y = targets.astype(xp.float64)
        res, dev = y - outputs, y - center
        return xp.stack([(res * res).sum(0), dev.sum(0), (dev * dev).sum(0)])

    def all_finite(self, x) -> bool:
        return bool(self.xp.isfinite(x).all())


def _labels(targets):
    """Class indices of multiclass targets: labels as they are, rows by argmax."""
    return targets if targets.ndim == 1 else targets.argmax(axis=1)
