"""Preprocessing layers fitted from data that travel with the model: ``Standardize``
and ``Whiten``.

``layer.adapt(X)`` fits the statistics in float64 on the host (adapt is not a hot path)
from a NumPy array or an array of the layer's backend; they are applied in every
forward, training and eval, so ``predict`` on raw data applies them too. They are
non-trainable state (``get_state`` / ``set_state``), never touched by optimizers.
``adapt`` may come before the model is built (the statistics then fix the input width)
or after (the device arrays are updated in place). The device copies are made in the
model's dtype at the first forward; the gradient passes through both layers, so they
may also sit after other layers.
"""

from __future__ import annotations

import numpy as np

from gpunn import inputs
from gpunn.backends import get_backend
from gpunn.checks import check_int, check_real
from gpunn.errors import ArgumentError, InvalidInputError, NotBuiltError
from gpunn.layers.base import Layer
from gpunn.layers.normalization import check_state, state_width

EPS64 = float(np.finfo(np.float64).eps)


class _Fitted(Layer):
    """A layer whose statistics come from :meth:`adapt`: float64 host arrays
    (``self._host``, the state) and the device arrays the forward uses."""

    adaptable = True

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._host: dict | None = None
        self._device: dict | None = None

    @property
    def adapted(self) -> bool:
        return self._host is not None

    def build(self, n_in, rng):
        if self.adapted and len(self._host["mean"]) != n_in:
            raise InvalidInputError(
                f"{type(self).__name__} was adapted to {len(self._host['mean'])} "
                f"features, but its input has {n_in}"
            )
        self._check_width(n_in)
        return super().build(n_in, rng)

    def bind(self, backend, params, grads):
        super().bind(backend, params, grads)
        self._device = None  # the host statistics are the truth; copied on first use

    def adapt(self, X) -> None:
        """Fits the statistics to ``X`` of shape ``(n_samples, n_features)``, with
        ``n_samples >= 2``, finite values and, once built, the layer's input width
        (else InvalidInputError naming the shapes)."""
        backend = self.backend if self.built else get_backend("cpu")
        X = inputs.features(backend, X, np.float64, self.n_in, "X")
        if X.shape[0] < 2:
            raise InvalidInputError(
                f"adapt needs at least 2 samples, got X of shape {tuple(X.shape)}"
            )
        self._check_width(X.shape[1])
        self._store(self._fit(backend.to_numpy(X)))

    def adapt_moments(self, n: int, mean, second) -> None:
        """Fits the statistics from the moments of ``n >= 2`` samples: their
        ``mean`` ``(n_features,)`` and their population variance ``(n_features,)``
        (``moment == "variance"``) or covariance ``(n_features, n_features)``
        (``"covariance"``), float64; what ``model.adapt`` computes in one pass over
        a memory-mapped array or an iterable."""
        if n < 2:
            raise InvalidInputError(f"adapt needs at least 2 samples, got {n}")
        mean = np.asarray(mean, np.float64)
        self._check_width(len(mean))
        if self.n_in is not None and len(mean) != self.n_in:
            raise InvalidInputError(
                f"adapt_moments got {len(mean)} features, the layer has {self.n_in}"
            )
        self._store(self._from_moments(n, mean, np.asarray(second, np.float64)))

    def _fit(self, X) -> dict:
        return self._from_moments(len(X), *self._moments(X))

    def _store(self, host: dict) -> None:
        self._host = host
        if self._device is None:
            return
        for key, value in self._device_values().items():  # in place: arrays stay put
            device = self._device[key]
            device[...] = self.backend.asarray(value, device.dtype)

    def _arrays(self, dtype) -> dict:
        """The device arrays in ``dtype``, copied from the host statistics once."""
        if not self.adapted:
            raise NotBuiltError(
                f"{type(self).__name__} has no statistics yet: call layer.adapt(X) "
                "(or model.adapt(X)) with training data first"
            )
        if self._device is None or next(iter(self._device.values())).dtype != dtype:
            self._device = {
                key: self.backend.asarray(value, dtype)
                for key, value in self._device_values().items()
            }
        return self._device

    def get_state(self) -> dict:
        """The fitted statistics as float64 host copies (empty before adapt)."""
        if not self.adapted:
            return {}
        return {key: value.copy() for key, value in self._host.items()}

    def set_state(self, state) -> None:
        """Restores :meth:`get_state`'s dict, validated (names, shapes, finite values)
        before anything changes."""
        if not state and not self.adapted:
            return
        n = self.n_in if self.n_in is not None else state_width(self, state, "mean")
        self._check_width(n)
        found = check_state(self, state, self._state_shapes(n))
        self._check_state(found)
        self._store(found)

    def _check_width(self, n: int) -> None:
        """Refuses an input width the layer's settings cannot handle."""

    def _check_state(self, state: dict) -> None:
        """Refuses state values the layer cannot use."""


class Standardize(_Fitted):
    """Standardizes each feature with statistics fitted by :meth:`adapt`:
    ``y = (x - mean) / std``.

    ``mean`` and the population standard deviation ``std`` (``ddof=0``, as
    scikit-learn's ``StandardScaler`` and Keras' ``Normalization``) are computed in
    float64. A constant feature, whose variance is within float64 rounding of zero
    (``var <= (n_samples * 2.2e-16 * mean)**2``), gets scale 1, so it maps to
    ``x - mean`` instead of a division by zero. Backward: ``dx = dy / std``.

    Args:
        name: optional layer name.

    Shape: ``(batch, n)`` -> ``(batch, n)``.
    State: ``{"mean": (n,), "scale": (n,)}``, ``scale`` being the divisor (> 0).

    Example::

        layer = Standardize()
        layer.adapt(X_train)
        model = gpunn.Sequential([layer, Dense(64, activation="relu"), Dense(10)])
    """

    moment = "variance"

    @staticmethod
    def _moments(X) -> tuple:
        return X.mean(axis=0), X.var(axis=0)

    @staticmethod
    def _from_moments(n: int, mean, var) -> dict:
        constant = var <= (n * EPS64 * mean) ** 2
        return {"mean": mean, "scale": np.where(constant, 1.0, np.sqrt(var))}

    def _device_values(self) -> dict:
        return {"mean": self._host["mean"], "inv_std": 1 / self._host["scale"]}

    def _state_shapes(self, n: int) -> dict:
        return {"mean": (n,), "scale": (n,)}

    def _check_state(self, state):
        if not (state["scale"] > 0).all():
            raise ArgumentError("Standardize state 'scale' must be > 0")

    def forward(self, x, training: bool = False):
        arrays = self._arrays(x.dtype)
        return self.backend.standardize(x, arrays["mean"], arrays["inv_std"])

    def backward(self, dy):
        if not self.needs_dx:
            return None
        return self.backend.backprop_standardize(dy, self._device["inv_std"])

    def flops_per_sample(self) -> int:
        return 2 * (self.n_in or 0)


class Whiten(_Fitted):
    """Whitens inputs with statistics fitted by :meth:`adapt`: ``y = (x - mean) @ W``,
    so the fitted data's covariance becomes (nearly) the identity.

    With the population covariance ``C = U diag(lambda) U^T`` of the adapted data
    (eigendecomposition in float64 on the host):

    - ``"pca"``: ``W = U diag(1 / sqrt(lambda + eps))``, columns by decreasing
      variance, each eigenvector's largest entry made positive; ``n_components`` keeps
      the first columns (PCA whitening, as scikit-learn's ``PCA(whiten=True)`` but
      with the population covariance and ``eps``).
    - ``"zca"``: ``W = U diag(1 / sqrt(lambda + eps)) U^T``, symmetric; the output
      stays closest to the input (Bell & Sejnowski, 1997, "The 'independent
      components' of natural scenes are edge filters").

    The forward is one GEMM with bias, ``x @ W - mean @ W``; backward: ``dx = dy @
    W.T``.

    Args:
        method: ``"pca"`` or ``"zca"``. Default: ``"pca"``.
        eps: added to the eigenvalues, ``> 0``; it bounds the gain of directions
            with (almost) no variance. Default: 1e-5.
        n_components: for ``"pca"``, the output width (``<= n``); None keeps all.
        name: optional layer name.

    Shape: ``(batch, n)`` -> ``(batch, n_components or n)``.
    State: ``{"mean": (n,), "components": W of shape (n, n_components or n)}``.
    """

    def __init__(
        self,
        method: str = "pca",
        eps: float = 1e-5,
        n_components: int | None = None,
        name: str | None = None,
    ):
        super().__init__(name)
        if method not in ("pca", "zca"):
            raise ArgumentError(f"method must be 'pca' or 'zca', got {method!r}")
        if n_components is not None:
            n_components = check_int("n_components", n_components, 1)
            if method != "pca":
                raise ArgumentError(
                    f"n_components is only for method='pca', got method={method!r}"
                )
        self.method, self.n_components = method, n_components
        self.eps = check_real("eps", eps, 0, lo_open=True)

    def output_dim(self, n_in: int) -> int:
        return self.n_components or n_in

    def _check_width(self, n):
        if self.n_components is not None and self.n_components > n:
            raise InvalidInputError(
                f"n_components must be <= the number of features ({n}), "
                f"got {self.n_components}"
            )

    moment = "covariance"

    @staticmethod
    def _moments(X) -> tuple:
        mean = X.mean(axis=0)
        centered = X - mean
        return mean, centered.T @ centered / len(X)

    def _from_moments(self, n: int, mean, covariance) -> dict:
        lam, u = np.linalg.eigh(covariance)
        lam, u = np.maximum(lam[::-1], 0), u[:, ::-1]  # by decreasing variance
        u = u * np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
        w = u / np.sqrt(lam + self.eps)
        w = w @ u.T if self.method == "zca" else w[:, : self.output_dim(len(mean))]
        return {"mean": mean, "components": np.ascontiguousarray(w)}

    def _device_values(self) -> dict:
        w = self._host["components"]
        shift = -(self._host["mean"] @ w)
        return {"components": w, "components_t": w.T.copy(), "shift": shift}

    def _state_shapes(self, n: int) -> dict:
        return {"mean": (n,), "components": (n, self.output_dim(n))}

    def forward(self, x, training: bool = False):
        arrays = self._arrays(x.dtype)
        return self.backend.dense_forward(x, arrays["components"], arrays["shift"])

    def backward(self, dy):
        if not self.needs_dx:
            return None
        # dx = dy @ W.T: the same GEMM op with the (contiguous) transposed components
        return self.backend.dense_forward(dy, self._device["components_t"])

    def flops_per_sample(self) -> int:
        n_in = self.n_in or 0
        return 2 * n_in * self.output_dim(n_in) + self.output_dim(n_in)

    def get_config(self) -> dict:
        return {
            "method": self.method,
            "eps": self.eps,
            "n_components": self.n_components,
            "name": self.name,
        }
