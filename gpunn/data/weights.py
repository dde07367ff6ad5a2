"""``fit(class_weight={label: weight})``, with Keras' meaning.

Each sample's loss is multiplied by the weight of its class, exactly as if that
weight had been given as its ``sample_weight``: the batch loss is ``sum_i c[y_i] s_i
loss_i / batch_size`` (``s`` the sample weights, 1 when absent), the same reduction
as ``sample_weight``. Classes missing from the dict weigh 1, as in Keras. The class
of a sample is its integer label, the argmax of a one-hot or probability row
(cross-entropy), or its rounded 0/1 target (binary cross-entropy with one output).
This is not the loss's own ``class_weight`` (PyTorch's ``weight``, which also
divides by the summed weights); the two may be combined.
"""

from __future__ import annotations

import numbers

import numpy as np

from gpunn.errors import ArgumentError, ArgumentTypeError, InvalidInputError

__all__ = ["apply", "vector"]


def vector(class_weight, loss, n_outputs: int, dtype) -> np.ndarray:
    """The weight of every class as a host array of ``dtype``, ``(n_classes,)``.

    Raises:
        ArgumentTypeError: ``class_weight`` is not a dict of numbers.
        ArgumentError: a regression loss, several binary outputs, a key that is not
            a class label in ``[0, n_classes)``, a weight < 0 or not finite.
        InvalidInputError: a weight that overflows the model's dtype.
    """
    if not isinstance(class_weight, dict):
        raise ArgumentTypeError(
            "class_weight must be a dict {class label: weight}, got "
            f"{type(class_weight).__name__}"
        )
    n_classes = _classes(loss, n_outputs)
    weights = np.ones(n_classes, np.float64)
    for label, weight in class_weight.items():
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise ArgumentTypeError(
                f"class_weight keys must be int class labels, got {label!r}"
            )
        if not 0 <= label < n_classes:
            raise ArgumentError(
                f"class_weight key {label} is not a class label in [0, {n_classes})"
            )
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise ArgumentTypeError(
                f"class_weight[{label}] must be a number, got {weight!r}"
            )
        if not (np.isfinite(weight) and weight >= 0):
            raise ArgumentError(
                f"class_weight[{label}] must be finite and >= 0, got {weight!r}"
            )
        weights[int(label)] = float(weight)
    with np.errstate(over="ignore"):
        cast = weights.astype(dtype)
    bad = np.flatnonzero(~np.isfinite(cast))
    if bad.size:
        label = int(bad[0])
        raise InvalidInputError(
            f"class_weight[{label}] = {weights[label]!r} is too large for the "
            f"model's dtype {np.dtype(dtype).name}"
        )
    return cast


def _classes(loss, n_outputs: int) -> int:
    if loss.task == "multiclass":
        return n_outputs
    if loss.task == "binary":
        if n_outputs != 1:
            raise ArgumentError(
                f"class_weight needs one class per sample, but the model has "
                f"{n_outputs} binary outputs (multi-label); use sample_weight"
            )
        return 2
    raise ArgumentError(
        f"class_weight is for classification losses, got {type(loss).__name__} "
        f"({loss.task}); use sample_weight"
    )


def apply(xp, class_vector, loss, targets, sample_weight=None):
    """The sample weights of ``targets`` (prepared by the loss, on ``xp``'s device)
    times their class weights: ``(n,)`` of the class vector's dtype."""
    classes = class_vector.shape[0]
    if targets.ndim == 1:  # integer labels (maybe ignore_index: any weight)
        labels = xp.clip(targets, 0, classes - 1)
    elif loss.task == "multiclass":  # one-hot or probability rows
        labels = xp.argmax(targets, axis=1)
    else:  # binary, one output: the rounded target
        labels = xp.rint(targets[:, 0]).astype(xp.int64)
    found = xp.take(class_vector, labels)
    return found if sample_weight is None else sample_weight * found
