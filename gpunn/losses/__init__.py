"""Losses by name. Each takes the network's raw outputs and is fused with its link, so
training never computes ``log(softmax(z))`` naively: the backend op returns the loss
and its gradient with respect to the raw outputs in one call. Every loss takes
optional per-sample weights (Keras' ``sum_over_batch_size``: ``sum_i s_i l_i /
batch``).

| name (aliases) | class | outputs | targets |
|---|---|---|---|
| ``"softmax_cross_entropy"`` (``"cross_entropy"``, ``"categorical_crossentropy"``, ``"sparse_categorical_crossentropy"``) | :class:`SoftmaxCrossEntropy` | logits ``(n, C)`` | labels ``(n,)`` or one-hot / probability rows ``(n, C)`` |
| ``"binary_cross_entropy"`` (``"bce"``, ``"binary_crossentropy"``) | :class:`BinaryCrossEntropy` | logits ``(n, k)`` | values in [0, 1], same shape |
| ``"mse"`` (``"mean_squared_error"``) | :class:`MeanSquaredError` | values ``(n, k)`` | same shape |
| ``"mae"`` (``"mean_absolute_error"``, ``"l1"``) | :class:`MeanAbsoluteError` | values ``(n, k)`` | same shape |
| ``"huber"`` | :class:`Huber` | values ``(n, k)`` | same shape |
| ``"gaussian_nll"`` | :class:`GaussianNLL` | ``[mean | log_var]`` ``(n, 2k)`` | ``(n, k)`` |
| ``"mdn"`` (``n_components=K``) | :class:`MixtureDensity` / :func:`mdn` | ``(n, K (1 + 2d))`` | ``(n, d)`` |

A 1-D target vector is accepted for one target column. ``get(name, **options)``
passes options to the class, e.g. ``get("cross_entropy", label_smoothing=0.1)`` or
``get("mdn", n_components=5)``; ``get(loss.get_config())`` rebuilds a loss.
"""

from __future__ import annotations

from gpunn.errors import ArgumentError, ArgumentTypeError
from gpunn.losses import gaussian_nll, mixture
from gpunn.losses.base import Loss, prepare_sample_weight
from gpunn.losses.classification import BinaryCrossEntropy, SoftmaxCrossEntropy
from gpunn.losses.gaussian_nll import GaussianNLL
from gpunn.losses.mixture import MixtureDensity, mdn
from gpunn.losses.regression import Huber, MeanAbsoluteError, MeanSquaredError

_BY_NAME = {
    cls.name: cls
    for cls in (
        SoftmaxCrossEntropy,
        BinaryCrossEntropy,
        MeanSquaredError,
        MeanAbsoluteError,
        Huber,
        GaussianNLL,
        MixtureDensity,
    )
}
_ALIASES = {
    "cross_entropy": "softmax_cross_entropy",
    "categorical_crossentropy": "softmax_cross_entropy",
    "sparse_categorical_crossentropy": "softmax_cross_entropy",
    "bce": "binary_cross_entropy",
    "binary_crossentropy": "binary_cross_entropy",
    "mean_squared_error": "mse",
    "mean_absolute_error": "mae",
    "l1": "mae",
}


def names() -> list[str]:
    """The canonical loss names (aliases are accepted by :func:`get` too)."""
    return sorted(_BY_NAME)


def get(loss, **options) -> Loss:
    """Returns the loss for a name or alias (with ``options`` for its class), a
    config dict from :meth:`Loss.get_config`, or a :class:`Loss` instance as is."""
    if isinstance(loss, Loss) and not options:
        return loss
    if isinstance(loss, dict) and not options:
        options = dict(loss)
        loss = options.pop("name", None)
    if isinstance(loss, str):
        key = _ALIASES.get(loss, loss)
        if key in _BY_NAME:
            return _BY_NAME[key](**options)
    if isinstance(loss, Loss):
        raise ArgumentTypeError(
            "options can be given with a loss name, not with a Loss"
        )
    raise ArgumentError(
        f"loss must be one of {names()}, an alias ({sorted(_ALIASES)}) or a Loss, "
        f"got {loss!r}"
    )


__all__ = [
    "BinaryCrossEntropy",
    "GaussianNLL",
    "Huber",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "MixtureDensity",
    "SoftmaxCrossEntropy",
    "gaussian_nll",
    "get",
    "mdn",
    "mixture",
    "names",
    "prepare_sample_weight",
]
