"""Losses by name. Each takes the network's raw outputs and is fused with its link, so
training never computes ``log(softmax(z))`` naively: the backend op returns the mean loss
and the gradient with respect to the raw outputs in one call.

| name | outputs | targets | backend op |
|---|---|---|---|
| ``"softmax_cross_entropy"`` | logits ``(batch, classes)`` | integer labels ``(batch,)`` | ``softmax_cross_entropy`` |
| ``"binary_cross_entropy"`` | logits ``(batch, k)`` | 0/1 (or soft) targets, same shape | ``binary_cross_entropy`` |
| ``"mse"`` | values ``(batch, k)`` | values, same shape | ``mse`` |

A 1-D target vector is accepted for a one-column output.
"""

from __future__ import annotations

import numpy as np

from gpunn.errors import InvalidInputError, LabelError


class Loss:
    """A named loss: validates targets once per dataset, then runs its fused op."""

    name = ""
    op = ""
    task = ""  # "multiclass", "binary" or "regression": decides what "accuracy" means

    link = None  # the final activation fused into this loss: "softmax", "sigmoid"

    def __call__(self, backend, outputs, targets, sample_weight=None):
        """Returns ``(loss, doutputs)``: the mean loss as a 0-d device array and its
        gradient with respect to ``outputs``. ``sample_weight`` (device ``(batch,)``)
        weights each sample's loss; the mean still divides by the batch size (Keras'
        ``sum_over_batch_size``)."""
        if sample_weight is None:
            return getattr(backend, self.op)(outputs, targets)
        return getattr(backend, self.op)(outputs, targets, sample_weight=sample_weight)

    def prepare_targets(self, y, n_outputs: int, dtype) -> np.ndarray:
        """Checks host targets ``y`` against the output width and returns them in the
        form the op takes (raises InvalidInputError / LabelError)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Mean over the batch of ``-log softmax(z)[label]`` (PyTorch's ``CrossEntropyLoss``
    on logits and class indices)."""

    name, op, task = "softmax_cross_entropy", "softmax_cross_entropy", "multiclass"

    def prepare_targets(self, y, n_outputs, dtype):
        if y.ndim != 1:
            raise InvalidInputError(
                f"y for softmax_cross_entropy must be integer labels of shape (n,), "
                f"got shape {y.shape}"
            )
        if y.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
            if bad.size:
                i = int(bad[0])
                raise LabelError(
                    f"y must hold integer class labels, got {y[i].item()!r} at index {i}"
                )
        elif y.dtype.kind not in "iub":
            raise TypeError(f"y must be integer labels, got dtype {y.dtype}")
        bad = np.flatnonzero((y < 0) | (y >= n_outputs))
        if bad.size:
            i = int(bad[0])
            raise LabelError(
                f"y must hold labels in [0, {n_outputs}) for a model with "
                f"{n_outputs} outputs, got {y[i].item()!r} at index {i}"
            )
        return y.astype(np.int64)


class _SameShape(Loss):
    def prepare_targets(self, y, n_outputs, dtype):
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise InvalidInputError(
                f"y for {self.name} must have shape (n, {n_outputs}) to match the "
                f"model's outputs, got shape {y.shape}"
            )
        if y.dtype.kind not in "iubf":
            raise TypeError(f"y must be numeric, got dtype {y.dtype}")
        if not np.isfinite(y).all():
            raise InvalidInputError(f"y for {self.name} contains NaN or infinity")
        return y.astype(dtype)


class BinaryCrossEntropy(_SameShape):
    """Mean over all elements of ``-(t log sigmoid(z) + (1 - t) log(1 - sigmoid(z)))``
    (PyTorch's ``BCEWithLogitsLoss``); targets in [0, 1]."""

    name, op, task = "binary_cross_entropy", "binary_cross_entropy", "binary"

    def prepare_targets(self, y, n_outputs, dtype):
        y = super().prepare_targets(y, n_outputs, dtype)
        if y.size and (y.min() < 0 or y.max() > 1):
            raise LabelError(
                f"y for binary_cross_entropy must lie in [0, 1], "
                f"got values in [{y.min()}, {y.max()}]"
            )
        return y


class MeanSquaredError(_SameShape):
    """Mean over all elements of ``(outputs - targets)**2`` (PyTorch's ``MSELoss``)."""

    name, op, task = "mse", "mse", "regression"


_BY_NAME = {
    cls.name: cls for cls in (SoftmaxCrossEntropy, BinaryCrossEntropy, MeanSquaredError)
}
_ALIASES = {
    "sparse_categorical_crossentropy": "softmax_cross_entropy",
    "cross_entropy": "softmax_cross_entropy",
    "bce": "binary_cross_entropy",
    "binary_crossentropy": "binary_cross_entropy",
    "mean_squared_error": "mse",
}


def names() -> list[str]:
    return sorted(_BY_NAME)


def get(loss) -> Loss:
    """Returns the loss for a name (or alias) or a :class:`Loss` instance."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        key = _ALIASES.get(loss, loss)
        if key in _BY_NAME:
            return _BY_NAME[key]()
    raise ValueError(f"loss must be one of {names()} or a Loss, got {loss!r}")
