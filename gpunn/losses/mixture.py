"""Mixture density networks (Bishop, "Mixture Density Networks", 1994): the network
predicts a mixture of ``K`` Gaussians with diagonal covariance per sample, trained by
the mixture's negative log-likelihood.

Output layout, width ``K (1 + 2d)`` for targets ``(n, d)``::

    [ a (K) | mu (K * d) | log_sigma (K * d) ]

``a`` are the mixture logits (weights ``softmax(a)``); ``mu[k, j]`` sits at column
``K + k * d + j`` and ``log_sigma[k, j]`` at ``K + K * d + k * d + j``. The helpers
below read the predicted distribution from ``model.predict`` outputs (host arrays).
"""

from __future__ import annotations

import numpy as np

from gpunn.checks import check_int, check_real
from gpunn.errors import ArgumentError, ArgumentTypeError, InvalidInputError
from gpunn.losses.base import Loss, values_like

DEFAULT_EPS = 1e-6


class MixtureDensity(Loss):
    """``loss = -sum_i s_i log sum_k pi_ik N(y_i; mu_ik, diag(sigma_ik^2)) / batch``
    by log-sum-exp, ``pi_i = softmax(a_i)``, ``sigma = exp(max(log_sigma, log(eps) /
    2))`` (``s``: optional sample weights, 1 by default). The backend op returns the
    analytic gradient with respect to all ``K (1 + 2d)`` outputs.

    Args:
        n_components: ``K``, the number of mixture components (>= 1).
        eps: the variance floor ``sigma^2 >= eps`` (the gradient passes straight
            through it). Default: 1e-6.

    Shape: outputs ``(batch, K (1 + 2d))`` laid out as in :mod:`gpunn.losses.mixture`,
    targets ``(batch, d)`` (1-D for ``d = 1``). Regression metrics compare the
    mixture mean with the targets.
    """

    name, op = "mdn", "mixture_density_nll"
    task = "regression"

    def __init__(self, n_components, eps=DEFAULT_EPS):
        self.n_components = check_int("n_components", n_components, 1)
        self.eps = check_real("eps", eps, 0, lo_open=True)

    def op_options(self, backend, dtype):
        options = {"n_components": self.n_components}
        if self.eps != DEFAULT_EPS:
            options["eps"] = self.eps
        return options

    def prepare_targets(self, y, n_outputs, dtype):
        k = self.n_components
        d = y.shape[1] if y.ndim == 2 else 1
        if y.ndim in (1, 2) and n_outputs != k * (1 + 2 * d):
            raise InvalidInputError(
                f"mdn with {k} components needs K (1 + 2d) = {k * (1 + 2 * d)} outputs "
                f"for targets with d = {d} columns, got a model with {n_outputs} "
                f"outputs"
            )
        return values_like(self.name, y, d, dtype, " (or (n,) for d = 1)")

    def point_estimate(self, backend, outputs):
        """The mixture mean ``sum_k pi_k mu_k`` ``(batch, d)``, on the device."""
        k, (n, width) = self.n_components, outputs.shape
        d = _dim(width, k)
        weights = backend.softmax(outputs[:, :k])
        means = outputs[:, k : k * (1 + d)].reshape(n, k, d)
        return (weights[:, :, None] * means).sum(axis=1)

    def split(self, outputs):
        """``(weights, means, sigmas)``: see :func:`split`."""
        return split(outputs, self.n_components, self.eps)

    def mean(self, outputs):
        """The mixture mean: see :func:`mixture_mean`."""
        return mixture_mean(outputs, self.n_components)

    def variance(self, outputs):
        """The mixture's per-dimension variance: see :func:`mixture_variance`."""
        return mixture_variance(outputs, self.n_components, self.eps)

    def sample(self, outputs, rng):
        """One draw per sample: see :func:`sample`."""
        return sample(outputs, self.n_components, rng, self.eps)

    def get_config(self):
        return {"name": self.name, "n_components": self.n_components, "eps": self.eps}


def mdn(n_components: int, eps: float = DEFAULT_EPS) -> MixtureDensity:
    """The mixture density loss with ``n_components`` diagonal Gaussians."""
    return MixtureDensity(n_components, eps)


def _dim(width: int, n_components: int) -> int:
    d, rest = divmod(width // n_components - 1, 2)
    if width % n_components or rest or d < 1:
        raise ArgumentError(
            f"outputs of an mdn with {n_components} components must have "
            f"K (1 + 2d) columns for some d >= 1, got {width}"
        )
    return d


def split(outputs, n_components: int, eps: float = DEFAULT_EPS):
    """The predicted mixture from host outputs ``(n, K (1 + 2d))``.

    Returns: float64 ``weights (n, K)`` (rows sum to 1), ``means (n, K, d)`` and
    ``sigmas (n, K, d)`` (standard deviations, floored at ``sqrt(eps)`` as in the
    loss).
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2:
        raise ArgumentError(f"outputs must be 2-D, got shape {outputs.shape}")
    k, n = check_int("n_components", n_components, 1), outputs.shape[0]
    d = _dim(outputs.shape[1], k)
    logits = outputs[:, :k] - outputs[:, :k].max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    means = outputs[:, k : k * (1 + d)].reshape(n, k, d)
    log_sigma = np.maximum(outputs[:, k * (1 + d) :], 0.5 * np.log(eps))
    with np.errstate(over="ignore"):
        sigmas = np.exp(log_sigma).reshape(n, k, d)
    return weights, means, sigmas


def mixture_mean(outputs, n_components: int):
    """``sum_k pi_k mu_k``: the mixture's mean ``(n, d)``, float64."""
    weights, means, _ = split(outputs, n_components)
    return np.einsum("nk,nkd->nd", weights, means)


def mixture_variance(outputs, n_components: int, eps: float = DEFAULT_EPS):
    """``sum_k pi_k (sigma_k^2 + mu_k^2) - mean^2`` per dimension ``(n, d)``, float64
    (the law of total variance)."""
    weights, means, sigmas = split(outputs, n_components, eps)
    second = np.einsum("nk,nkd->nd", weights, sigmas**2 + means**2)
    mean = np.einsum("nk,nkd->nd", weights, means)
    return np.maximum(second - mean**2, 0.0)


def sample(outputs, n_components: int, rng, eps: float = DEFAULT_EPS):
    """One draw ``(n, d)`` per sample from the predicted mixture: a component ``k ~
    pi``, then ``mu_k + sigma_k * N(0, 1)``.

    Args:
        rng: a ``numpy.random.Generator`` (e.g. ``np.random.default_rng(0)``), the
            only source of randomness.
    """
    if not isinstance(rng, np.random.Generator):
        raise ArgumentTypeError(
            "rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    weights, means, sigmas = split(outputs, n_components, eps)
    n, k, d = means.shape
    u = rng.random((n, 1))
    chosen = np.minimum((weights.cumsum(axis=1) < u).sum(axis=1), k - 1)
    rows = np.arange(n)
    noise = rng.standard_normal((n, d))
    return means[rows, chosen] + sigmas[rows, chosen] * noise
