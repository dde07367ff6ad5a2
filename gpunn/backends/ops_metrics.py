"""Metric reductions of the reference backend: counts and sums that stay on the device
until an epoch's metrics are read.

Mixed into :class:`~gpunn.backends.numpy_backend.NumpyBackend` (see its module for the
conventions), written once against ``self.xp``.
"""

from __future__ import annotations


class MetricOps:
    """The per-batch reductions behind :mod:`gpunn.metrics`; needs ``self.xp``."""

    def count_correct(self, outputs, targets, kind: str):
        """``[correct predictions, predictions scored]`` as an int64 device array
        ``(2,)``. ``kind`` is ``"multiclass"`` (argmax vs integer labels, or vs the
        argmax of probability rows; a label outside ``[0, C)``, i.e. an ignored one,
        is not scored) or ``"binary"`` (logit > 0 vs target > 0.5, element-wise)."""
        xp = self.xp
        if kind == "multiclass":
            labels, valid = _valid_labels(xp, outputs, targets)
            hits = ((outputs.argmax(axis=1) == labels) & valid).sum()
            return xp.stack([hits, valid.sum()]).astype(xp.int64)
        hits = ((outputs > 0) == (targets > 0.5)).sum()
        return xp.stack([hits, xp.asarray(targets.size)]).astype(xp.int64)

    def count_top_k(self, outputs, targets, k: int):
        """``[rows whose label's score is beaten by fewer than k other scores, rows
        scored]`` as an int64 device array ``(2,)`` (ties count for the label, as
        TensorFlow's ``in_top_k``; ignored labels outside ``[0, C)`` are not scored).
        Shape: outputs ``(batch, C)``, targets labels ``(batch,)`` or rows."""
        xp = self.xp
        labels, valid = _valid_labels(xp, outputs, targets)
        safe = xp.where(valid, labels, 0)
        picked = xp.take_along_axis(outputs, safe[:, None], axis=1)
        hits = (((outputs > picked).sum(axis=1) < k) & valid).sum()
        return xp.stack([hits, valid.sum()]).astype(xp.int64)

    def class_counts(self, outputs, targets, kind: str):
        """Per class, as one int64 device array ``(3 * C,)``: ``[true positives |
        predicted | actual]``. ``"multiclass"``: argmax vs labels, ``C`` classes
        (rows with an ignored label outside ``[0, C)`` are not counted);
        ``"binary"``: per output column, logit > 0 vs target > 0.5."""
        xp = self.xp
        if kind == "binary":
            pred, true = outputs > 0, targets > 0.5
            counts = [(pred & true).sum(axis=0), pred.sum(axis=0), true.sum(axis=0)]
            return xp.concatenate(counts).astype(xp.int64)
        c = outputs.shape[1]
        true, valid = _valid_labels(xp, outputs, targets)
        pred = outputs.argmax(axis=1)
        # misses and unscored rows land in an extra bin c
        bins = [
            xp.where((pred == true) & valid, true, c),
            xp.where(valid, pred, c),
            xp.where(valid, true, c),
        ]
        counts = [xp.bincount(b, minlength=c + 1)[:c] for b in bins]
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


def _valid_labels(xp, outputs, targets):
    """``(labels, valid)``: class indices of multiclass targets and whether each is
    a class (an ``ignore_index`` label lies outside ``[0, C)``)."""
    labels = _labels(targets)
    return labels, (labels >= 0) & (labels < outputs.shape[1])


def _labels(targets):
    """Class indices of multiclass targets: labels as they are, rows by argmax."""
    return targets if targets.ndim == 1 else targets.argmax(axis=1)
