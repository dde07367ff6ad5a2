"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's estimators, trained by
gpunn on the GPU (or NumPy on the CPU).

They subclass scikit-learn's own classes, so they are scikit-learn estimators in
every respect (``isinstance``, tags, ``clone``, pipelines, search, pickling), and
replace the numerical work: the forward and backward passes, the loss, the L2
penalty and the solvers run on gpunn's backend over one flat parameter arena.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import _fit_context
from sklearn.neural_network import MLPClassifier as _SkClassifier
from sklearn.neural_network import MLPRegressor as _SkRegressor
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if

from gpunn.sklearn._base import DEVICES, DTYPES, PRECISIONS, GpunnMLPMixin

_GPUNN_CONSTRAINTS = {
    "device": [StrOptions(set(DEVICES))],
    "dtype": [StrOptions(set(DTYPES)), None],
    "precision": [StrOptions(set(PRECISIONS))],
}

_DOC = """{summary}

    The same constructor parameters, defaults and meaning as scikit-learn's
    ``sklearn.neural_network.{name}`` (see its documentation), and the same fitted
    attributes as NumPy arrays (``coefs_``, ``intercepts_``, ``loss_``,
    ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
    ``best_validation_score_``, ``n_iter_``, ``t_``, ``n_features_in_``,
    ``feature_names_in_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``{extra}).
    Initial weights, batch order and the early-stopping split are drawn from
    ``random_state`` exactly as scikit-learn draws them, and the solvers follow
    scikit-learn's update rules, so in float64 a fit reproduces scikit-learn's.

    Args (gpunn's, keyword-only, after scikit-learn's):
        device: ``"auto"`` (env ``GPUNN_BACKEND`` when set, else the GPU when CuPy
            finds a usable one, else NumPy on the CPU), ``"cpu"`` or ``"gpu"``.
            Default: ``"auto"``.
        dtype: ``"float32"``, ``"float64"``, or None for the input's dtype (float64
            unless ``X`` is float32), as scikit-learn. Default: ``"float32"``.
        precision: ``"float32"`` (everything in ``dtype``) or ``"mixed_bfloat16"``
            (bfloat16 layers over float32 weights, see gpunn's mixed precision;
            ``dtype`` must then be ``"float32"`` or None, which means float32).
            ``mixed_float16`` is not offered: scikit-learn's solvers have no loss
            scaling. Default: ``"float32"``.

    Differences from scikit-learn: ``random_state=None`` draws a fresh seed from the
    OS instead of reading NumPy's global RandomState (pass an int for reproducible
    fits); sparse input is densified (batches are dense on the device).

    Example::

        from gpunn.sklearn import {name}
        est = {name}(hidden_layer_sizes=(256, 256), random_state=0).fit(X, y)
        est.{method}(X)
    """


class MLPClassifier(GpunnMLPMixin, _SkClassifier):
    __doc__ = _DOC.format(
        summary="Multi-layer perceptron classifier trained by gpunn (log-loss).",
        name="MLPClassifier",
        extra=", ``classes_``",
        method="predict_proba",
    )

    _parameter_constraints: ClassVar[dict] = {
        **_SkClassifier._parameter_constraints,
        **_GPUNN_CONSTRAINTS,
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="auto",
        dtype="float32",
        precision="float32",
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
        )
        self.device = device
        self.dtype = dtype
        self.precision = precision

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fits the model to ``X`` ``(n_samples, n_features)`` and class labels
        ``y`` ``(n_samples,)`` (any labels) or a label indicator matrix
        ``(n_samples, n_labels)``; returns self."""
        return self._gpunn_fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``; ``classes`` (all labels) is needed on the
        first call. Only for the stochastic solvers."""
        from sklearn.preprocessing import LabelBinarizer
        from sklearn.utils.multiclass import (
            _check_partial_fit_first_call,
            type_of_target,
        )

        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._gpunn_fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Class labels ``(n_samples,)`` (or an indicator matrix for multilabel)."""
        return self._gpunn_decode(self._gpunn_outputs(X))

    def predict_proba(self, X):
        """Class probabilities ``(n_samples, n_classes)`` in ``classes_`` order
        (each label's probability for multilabel)."""
        p = self._gpunn_outputs(X)
        if self.n_outputs_ == 1:
            return np.vstack([1 - p.ravel(), p.ravel()]).T
        return p

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        p = self.predict_proba(X)
        return np.log(p, out=p)

    def _gpunn_out_activation(self) -> str:
        multiclass = self._label_binarizer.y_type_ == "multiclass"
        return "softmax" if multiclass else "logistic"

    def _loss_name(self) -> str:
        return "binary_log_loss" if self.out_activation_ == "logistic" else "log_loss"

    def _gpunn_decode(self, p):
        return self._label_binarizer.inverse_transform(
            p.ravel() if self.n_outputs_ == 1 else p
        )

    @staticmethod
    def _gpunn_metric(y, y_pred, sample_weight=None):
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, y_pred, sample_weight=sample_weight)


class MLPRegressor(GpunnMLPMixin, _SkRegressor):
    __doc__ = _DOC.format(
        summary="Multi-layer perceptron regressor trained by gpunn (half squared "
        "error, or half Poisson deviance with ``loss='poisson'``).",
        name="MLPRegressor",
        extra="",
        method="predict",
    )

    _parameter_constraints: ClassVar[dict] = {
        **_SkRegressor._parameter_constraints,
        **_GPUNN_CONSTRAINTS,
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="auto",
        dtype="float32",
        precision="float32",
    ):
        super().__init__(
            loss=loss,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
        )
        self.device = device
        self.dtype = dtype
        self.precision = precision

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fits the model to ``X`` ``(n_samples, n_features)`` and targets ``y``
        ``(n_samples,)`` or ``(n_samples, n_targets)``; returns self."""
        return self._gpunn_fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``."""
        return self._gpunn_fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predictions ``(n_samples,)``, or ``(n_samples, n_targets)``."""
        p = self._gpunn_outputs(X)
        return p.ravel() if p.shape[1] == 1 else p

    def _gpunn_out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _loss_name(self) -> str:
        return self.loss

    @staticmethod
    def _gpunn_decode(p):
        return p.ravel() if p.shape[1] == 1 else p

    @staticmethod
    def _gpunn_metric(y, y_pred, sample_weight=None):
        from sklearn.metrics import r2_score

        return r2_score(y, y_pred, sample_weight=sample_weight)
