"""``model.adapt`` on a memory-mapped array or an iterable: one pass of statistics.

Each adaptable layer (``Standardize``, ``Whiten``) gets the float64 mean and the
population variance (or covariance) of its input, accumulated piece by piece with
Chan, Golub and LeVeque's pairwise update (1979): a piece of ``m`` rows with mean
``b`` and sum of squared deviations ``M_b`` merges into ``n`` rows with ``a``,
``M_a`` as ``mean = a + d m / (n + m)``, ``M = M_a + M_b + d d^T n m / (n + m)``
(``d = b - a``). The result equals the in-memory fit up to float64 rounding. A
layer sees the data as the layers before it transform it (eval mode), so a model
with several adaptable layers makes one pass per adaptable layer (an iterable must
then be one that can be iterated again, not a generator).
"""

from __future__ import annotations

import numpy as np

from gpunn.errors import ArgumentError, InvalidInputError

__all__ = ["Moments", "adapt_streamed"]


class Moments:
    """Running count, mean and sum of squared deviations of rows (float64).

    Args:
        covariance: keep the full ``(d, d)`` matrix (else per feature).
    """

    def __init__(self, covariance: bool):
        self.covariance, self.n, self.mean, self.m2 = covariance, 0, None, None

    def add(self, x: np.ndarray) -> None:
        """Adds the rows of ``x`` ``(m, d)``."""
        x = np.asarray(x, np.float64)
        m = len(x)
        if m == 0:
            return
        mean = x.mean(axis=0)
        centered = x - mean
        m2 = centered.T @ centered if self.covariance else (centered**2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = m, mean, m2
            return
        total = self.n + m
        delta = mean - self.mean
        spread = np.outer(delta, delta) if self.covariance else delta**2
        self.m2 = self.m2 + m2 + spread * (self.n * m / total)
        self.mean = self.mean + delta * (m / total)
        self.n = total

    def second(self) -> np.ndarray:
        """The population variance (or covariance)."""
        return self.m2 / self.n


def adapt_streamed(model, source, batch_size: int) -> None:
    """Fits every adaptable layer of ``model`` from ``source`` (a memory-mapped
    array or iterable source of :mod:`gpunn.data`), one pass per layer."""
    adaptable = [layer for layer in model.layers if layer.adaptable]
    reiterable = source.kind != "iterable" or iter(source.data) is not source.data
    if len(adaptable) > 1 and not reiterable:
        raise ArgumentError(
            f"adapt makes one pass per adaptable layer ({len(adaptable)} here), but "
            "X is an iterator that can be read once: pass a DataLoader or another "
            "iterable whose __iter__ starts over"
        )
    backend = model.backend
    for target in adaptable:
        moments = Moments(target.moment == "covariance")
        for xb, *_ in _pass(source, batch_size):
            x = xb
            for layer in model.layers:
                if layer is target:
                    break
                x = layer.forward(x, training=False)
            moments.add(backend.to_numpy(x))
        if moments.n < 2:
            raise InvalidInputError(f"adapt needs at least 2 samples, got {moments.n}")
        target.adapt_moments(moments.n, moments.mean, moments.second())


def _pass(source, batch_size: int):
    batches = source.batches(None, 0, batch_size)
    try:
        yield from batches
    finally:
        batches.close()
