"""What gpunn's ``MLPClassifier`` and ``MLPRegressor`` share: scikit-learn's
``_fit`` (validation, initialisation, solver dispatch) with the training on a
gpunn :class:`~gpunn.sklearn._network.Network`, and prediction on it.

The estimator's NumPy attributes (``coefs_``, ``intercepts_``, ...) are the source
of truth: each fit, partial_fit and predict copies them to the device network
first (so weights set by hand are used, as in scikit-learn) and each fit copies
the trained ones back. The network itself is a cache, never pickled.
"""

from __future__ import annotations

import itertools

import numpy as np

from gpunn.sklearn import _lbfgs, _stochastic
from gpunn.sklearn._network import Network

DEVICES = ("auto", "cpu", "gpu")
DTYPES = ("float32", "float64")
PRECISIONS = ("float32", "mixed_bfloat16")


def random_state(seed) -> np.random.RandomState:
    """scikit-learn's ``check_random_state``, except that None draws a fresh seed
    from the OS instead of using NumPy's global RandomState."""
    if seed is None:
        return np.random.RandomState(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(seed, np.random.RandomState):
        return seed
    from sklearn.utils import check_random_state

    return check_random_state(seed)


def glorot_uniform(rng, fan_in: int, fan_out: int, activation: str, dtype):
    """scikit-learn's initial ``(coef, intercept)`` of one layer: both uniform in
    ``+-sqrt(factor / (fan_in + fan_out))``, factor 2 for logistic hidden units and
    6 otherwise (Glorot & Bengio 2010), drawn in float64 in that order."""
    factor = 2.0 if activation == "logistic" else 6.0
    bound = np.sqrt(factor / (fan_in + fan_out))
    coef = rng.uniform(-bound, bound, (fan_in, fan_out))
    intercept = rng.uniform(-bound, bound, fan_out)
    return coef.astype(dtype, copy=False), intercept.astype(dtype, copy=False)


class GpunnMLPMixin:
    """scikit-learn's MLP fitting with the numerical work on gpunn."""

    def _gpunn_fit(self, X, y, sample_weight=None, incremental=False):
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        first_pass = not hasattr(self, "coefs_") or (
            not self.warm_start and not incremental
        )
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        X = _dense(X)
        if sample_weight is not None:
            from sklearn.utils.validation import _check_sample_weight

            sample_weight = _check_sample_weight(sample_weight, X)
        y = y.reshape((-1, 1)) if y.ndim == 1 else y
        self.n_outputs_ = y.shape[1]
        units = [X.shape[1], *hidden, self.n_outputs_]
        self._random_state = random_state(self.random_state)
        dtype = self._gpunn_dtype(X)
        if first_pass:
            self._gpunn_initialize(y, units, dtype)
        net = self._gpunn_net(dtype)
        if self.solver in ("sgd", "adam"):
            _stochastic.fit(self, net, X, y, sample_weight, incremental)
        else:
            _lbfgs.fit(self, net, X, y, sample_weight)
        weights = [*self.coefs_, *self.intercepts_]
        if not all(np.isfinite(w).all() for w in weights):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _gpunn_dtype(self, X) -> np.dtype:
        """``dtype``, or None: the input's, except under mixed precision, whose
        master weights are float32 whatever the input."""
        if self.dtype is not None:
            return np.dtype(self.dtype)
        mixed = getattr(self, "precision", "float32") != "float32"
        return np.dtype(np.float32) if mixed else X.dtype

    def _gpunn_initialize(self, y, units, dtype) -> None:
        """scikit-learn's ``_initialize``: counters, output activation, weights."""
        self.n_iter_, self.t_ = 0, 0
        self.n_outputs_, self.n_layers_ = y.shape[1], len(units)
        self.out_activation_ = self._gpunn_out_activation()
        pairs = [
            glorot_uniform(self._random_state, a, b, self.activation, dtype)
            for a, b in itertools.pairwise(units)
        ]
        self.coefs_ = [c for c, _ in pairs]
        self.intercepts_ = [b for _, b in pairs]
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        if self.solver in ("sgd", "adam"):
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _gpunn_net(self, dtype) -> Network:
        """The cached device network for the current ``coefs_`` (rebuilt when the
        shapes, activation, dtype, device or precision changed), loaded with them."""
        shapes = [c.shape for c in self.coefs_]
        precision = getattr(self, "precision", "float32")
        setup = (shapes, self.activation, dtype, self.device, precision)
        net = getattr(self, "_gpunn_network", None)
        if net is None or not net.matches(*setup):
            net = Network(*setup)
            self._gpunn_network = net
        net.set_weights(self.coefs_, self.intercepts_)
        return net

    def _gpunn_outputs(self, X) -> np.ndarray:
        """The output layer's activations for ``X`` ``(n, n_outputs)``, validated as scikit-learn validates prediction input."""
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        net = self._gpunn_net(self.coefs_[0].dtype)
        out = net.predict(_dense(X), self.out_activation_)
        # the dtype of X @ coefs_ in NumPy, as scikit-learn's predictions
        return out.astype(np.result_type(X.dtype, self.coefs_[0].dtype), copy=False)

    def _gpunn_score(self, net, X, y, sample_weight) -> float:
        """The validation score of early stopping, ``X`` on the device."""
        p = net.backend.to_numpy(net.outputs(X, self.out_activation_))
        y_pred = self._gpunn_decode(p)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return float(self._gpunn_metric(y, y_pred, sample_weight=sample_weight))

    def __getstate__(self):
        """Plain scikit-learn state: the device network is dropped (rebuilt on
        use) and the solver is handed over as scikit-learn's optimizer object."""
        state = dict(super().__getstate__())
        state.pop("_gpunn_network", None)
        solver = state.get("_optimizer")
        if hasattr(solver, "to_sklearn"):
            state["_optimizer"] = solver.to_sklearn(
                solver.net, list(self.coefs_) + list(self.intercepts_)
            )
        return state


def _dense(X):
    """``X`` as a dense array (sparse input is densified: gpunn's layers take
    dense batches)."""
    return X.toarray() if hasattr(X, "toarray") else X
