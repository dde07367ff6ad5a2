"""scikit-learn's output activations and losses, written against the backend's
array module (``xp``: NumPy or CuPy) with scikit-learn's operations in its order.

The network's last layer gives the raw outputs ``z``; :func:`output` applies the
output activation (``softmax``, ``logistic``, ``identity`` or ``exp``) and
:func:`loss_and_delta` returns scikit-learn's loss and ``delta = (p - y) * s`` (the
gradient of the summed loss with respect to ``z``; ``s``: sample weights). The loss
is scikit-learn's: probabilities clipped to ``[eps, 1 - eps]`` before the log (``eps``
the dtype's machine epsilon), means over samples then sums over outputs, half
squared error, half Poisson deviance.
"""

from __future__ import annotations

import numpy as np

OUTPUTS = ("softmax", "logistic", "identity", "exp")


def output(backend, z, activation: str):
    """The output activation applied to the raw outputs ``z`` ``(batch, k)`` (a new
    array; ``z`` is left as it is)."""
    xp = backend.xp
    if activation == "softmax":  # scikit-learn's inplace_softmax, same operations
        p = xp.exp(z - z.max(axis=1)[:, None])
        p /= p.sum(axis=1)[:, None]
        return p
    if activation == "logistic":
        return backend.sigmoid(z)
    if activation == "exp":
        return xp.exp(z)
    return z


def _average(xp, values, weights):
    """``numpy.average(values, weights=weights, axis=0)``."""
    if weights is None:  # numpy's mean: the sum divided by the count
        return values.sum(axis=0) / len(values)
    return (values * weights[:, None]).sum(axis=0) / weights.sum()


def loss_value(backend, name: str, y, p, weights=None):
    """scikit-learn's loss ``name`` of predictions ``p`` against targets ``y`` (both
    ``(batch, k)``) as a 0-d device array. ``name``: ``"log_loss"`` (softmax
    outputs), ``"binary_log_loss"`` (logistic outputs), ``"squared_error"`` or
    ``"poisson"``."""
    xp = backend.xp
    if name == "squared_error":
        return 0.5 * _average(xp, (y - p) ** 2, weights).mean()
    if name == "poisson":
        ratio = xp.where(y > 0, y, 1) / p
        terms = xp.where(y > 0, y * xp.log(ratio), 0) - y + p
        return _average(xp, terms, weights).sum()
    eps = np.finfo(p.dtype).eps
    p = xp.clip(p, eps, 1 - eps)
    if name == "binary_log_loss":
        terms = y * xp.log(p) + (1 - y) * xp.log(1 - p)
    else:
        terms = y * xp.log(p)
    return -_average(xp, terms, weights).sum()


def loss_and_delta(backend, name: str, y, p, weights=None):
    """``(loss, delta)`` for one batch: :func:`loss_value` and ``(p - y) * s``."""
    loss = loss_value(backend, name, y, p, weights)
    delta = p - y
    if weights is not None:
        delta *= weights[:, None]
    return loss, delta
