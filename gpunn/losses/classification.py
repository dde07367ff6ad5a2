"""Classification losses, each fused with its link: softmax cross-entropy and binary
cross-entropy on logits (PyTorch's ``CrossEntropyLoss`` / ``BCEWithLogitsLoss``)."""

from __future__ import annotations

import numbers

import numpy as np

from gpunn.checks import check_real
from gpunn.errors import ArgumentError, ArgumentTypeError, InvalidInputError, LabelError
from gpunn.losses.base import (
    Loss,
    check_numeric,
    integer_labels,
    values_like,
    weight_vector,
)

ROW_SUM_TOL = 1e-4  # |sum(row) - 1| allowed for class-probability targets


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of ``softmax(logits / temperature)`` against class labels or
    class-probability rows: PyTorch's ``CrossEntropyLoss(weight=class_weight,
    label_smoothing=label_smoothing)``, with logits divided by ``temperature``.

    Integer labels ``y``: ``loss = sum_i s_i ((1 - ls) w[y_i] nll_i[y_i] + ls / C
    sum_c w_c nll_ic) / sum_i w[y_i]``, ``nll = -log_softmax(z / T)``; probability
    rows ``t``: ``loss = sum_i s_i sum_c w_c ((1 - ls) t_ic + ls / C) nll_ic /
    batch``. ``w`` are the class weights (1 by default), ``s`` optional sample
    weights (1 by default): they multiply each sample's term and leave the
    denominator alone, so with class weights and sample weights together the loss is
    ``sum_i s_i w[y_i] l_i / sum_i w[y_i]`` (PyTorch's normalisation, Keras'
    multiplication). A batch whose labels all have weight 0 gives NaN, as in PyTorch.
    Label smoothing: Szegedy et al., "Rethinking the Inception Architecture", 2016;
    temperature: Hinton et al., "Distilling the Knowledge in a Neural Network", 2015.

    With ``ignore_index`` (PyTorch's ``ignore_index``, e.g. ``-100`` for padding),
    samples labelled with it add nothing to the loss (the label-smoothing term
    included), get a zero gradient and leave the denominator: ``sum_i w[y_i]`` (or
    the count) runs over the other samples. A batch in which every sample is ignored
    gives loss 0 and a zero gradient, where PyTorch gives NaN: there is nothing to
    learn from it, and a NaN would stop training with a NonFiniteError. Metrics such
    as accuracy still count the ignored samples.

    Args:
        label_smoothing: ``ls`` in [0, 1]: the share of the target spread uniformly
            over the classes. Default: 0.0.
        class_weight: None or one weight >= 0 per class (PyTorch's ``weight``).
            Default: None.
        temperature: ``T > 0`` dividing the logits in the loss (the gradient is
            divided by ``T`` too); ``predict`` still returns ``softmax(z)``.
            Default: 1.0.
        ignore_index: None or an int: the label of samples to leave out (any int,
            inside ``[0, C)`` or not). Integer labels only: probability rows raise
            ValueError. Default: None (PyTorch's default is -100; pass it to get
            PyTorch's behaviour).

    Shape: logits ``(batch, C)``; targets integer labels ``(batch,)`` in ``[0, C)``
    (or equal to ``ignore_index``), or rows ``(batch, C)`` that are >= 0 and sum to
    1 (within 1e-4).
    Exact one-hot rows are kept as labels (cheaper; the same numbers) unless
    ``class_weight`` is set, where PyTorch normalises probability targets by the
    batch size instead of ``sum_i w[y_i]``: one-hot rows then give PyTorch's
    probability-target numbers, integer labels its index-target numbers.
    """

    name = op = "softmax_cross_entropy"
    task, link = "multiclass", "softmax"

    def __init__(
        self, label_smoothing=0.0, class_weight=None, temperature=1.0, ignore_index=None
    ):
        self.label_smoothing = check_real("label_smoothing", label_smoothing, 0, 1)
        self.class_weight = weight_vector("class_weight", class_weight)
        self.temperature = check_real("temperature", temperature, 0, lo_open=True)
        self.ignore_index = _check_ignore_index(ignore_index)

    def op_options(self, backend, dtype):
        options = {}
        if self.class_weight is not None:
            options["class_weight"] = self._device(
                backend, dtype, "class_weight", self.class_weight
            )
        if self.label_smoothing:
            options["label_smoothing"] = self.label_smoothing
        if self.temperature != 1:
            options["temperature"] = self.temperature
        if self.ignore_index is not None:
            options["ignore_index"] = self.ignore_index
        return options

    def prepare_targets(self, y, n_outputs, dtype):
        if self.class_weight is not None and self.class_weight.size != n_outputs:
            raise ArgumentError(
                f"class_weight has {self.class_weight.size} entries but the model has "
                f"{n_outputs} outputs (one per class)"
            )
        if y.ndim == 1:
            return integer_labels(self.name, y, n_outputs, self.ignore_index)
        if self.ignore_index is not None:
            raise InvalidInputError(
                f"ignore_index={self.ignore_index} needs integer labels y of shape "
                f"(n,), got rows of shape {y.shape}"
            )
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise InvalidInputError(
                f"y for {self.name} must be integer labels of shape (n,) or one-hot / "
                f"probability rows of shape (n, {n_outputs}), got shape {y.shape}"
            )
        return self._probability_rows(y, dtype)

    def _probability_rows(self, y, dtype):
        check_numeric("y", y)
        y64 = y.astype(np.float64)
        bad = np.argwhere(~np.isfinite(y64) | (y64 < 0))
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise LabelError(
                f"y rows must hold finite class probabilities >= 0, got "
                f"{y[i, j].item()!r} at index ({i}, {j})"
            )
        sums = y64.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1) > ROW_SUM_TOL)
        if off.size:
            i = int(off[0])
            raise LabelError(
                f"y rows must sum to 1 (one-hot or class probabilities), row {i} sums "
                f"to {sums[i]:.6g}"
            )
        if self.class_weight is None and ((y64 == 0) | (y64 == 1)).all():
            return y64.argmax(axis=1).astype(np.int64)  # one-hot: keep the labels
        return y.astype(dtype)

    def get_config(self):
        weight = self.class_weight
        config = {
            "name": self.name,
            "label_smoothing": self.label_smoothing,
            "class_weight": None if weight is None else weight.tolist(),
            "temperature": self.temperature,
        }
        if self.ignore_index is not None:  # configs saved before it stay equal
            config["ignore_index"] = self.ignore_index
        return config


def _check_ignore_index(value):
    """None or an int (bools refused); returns it as int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"ignore_index must be None or an int, got {value!r}")
    return int(value)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy of ``sigmoid(logits)`` per output: PyTorch's
    ``BCEWithLogitsLoss(pos_weight=pos_weight)``, targets smoothed as Keras'
    ``binary_crossentropy(label_smoothing=ls)``.

    ``loss = sum_i s_i sum_j -(p_j t_ij log sigmoid(z_ij) + (1 - t_ij) log(1 -
    sigmoid(z_ij))) / (batch k)`` with ``t <- t (1 - ls) + ls / 2`` and ``s``
    optional sample weights; computed from logits without overflow.

    Args:
        pos_weight: None, a number, or one number >= 0 per output: the weight of the
            positive term (PyTorch's ``pos_weight``, e.g. ``n_negative /
            n_positive``). Default: None.
        label_smoothing: ``ls`` in [0, 1]. Default: 0.0.

    Shape: logits ``(batch, k)``, targets in [0, 1] of the same shape (1-D for
    ``k = 1``).
    """

    name = op = "binary_cross_entropy"
    task, link = "binary", "sigmoid"

    def __init__(self, pos_weight=None, label_smoothing=0.0):
        self.pos_weight = weight_vector("pos_weight", pos_weight, scalar_ok=True)
        self.label_smoothing = check_real("label_smoothing", label_smoothing, 0, 1)

    def op_options(self, backend, dtype):
        options = {}
        if self.pos_weight is not None:
            options["pos_weight"] = self._device(
                backend, dtype, "pos_weight", self.pos_weight
            )
        if self.label_smoothing:
            options["label_smoothing"] = self.label_smoothing
        return options

    def prepare_targets(self, y, n_outputs, dtype):
        if self.pos_weight is not None and self.pos_weight.size not in (1, n_outputs):
            raise ArgumentError(
                f"pos_weight has {self.pos_weight.size} entries but the model has "
                f"{n_outputs} outputs (give one, or one per output)"
            )
        y = values_like(self.name, y, n_outputs, dtype, " to match the model's outputs")
        if y.size and (y.min() < 0 or y.max() > 1):
            i, j = (int(v) for v in np.argwhere((y < 0) | (y > 1))[0])
            raise LabelError(
                f"y for {self.name} must lie in [0, 1], got {y[i, j].item()!r} at "
                f"index ({i}, {j})"
            )
        return y

    def get_config(self):
        weight = self.pos_weight
        return {
            "name": self.name,
            "pos_weight": None if weight is None else weight.tolist(),
            "label_smoothing": self.label_smoothing,
        }
