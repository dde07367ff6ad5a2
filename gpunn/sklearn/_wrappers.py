"""``NeuralNetClassifier`` and ``NeuralNetRegressor``: see :mod:`._neuralnet`."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin

from gpunn.sklearn._neuralnet import _NeuralNet

_ARGS = """
    Args:
        build_fn: a function returning a compiled :class:`gpunn.Sequential`. It is
            called at each fit with its tunable arguments (set here under their own
            names) and, when its signature names them, ``n_features_in``,
            ``n_outputs``{classes} and ``seed`` (an int from ``random_state``).
            Default: None, :func:`gpunn.sklearn.mlp` (``hidden_layer_sizes``,
            ``activation``, ``dropout``, ``optimizer``, ``learning_rate``,
            ``dtype``, ``device``).
        epochs: passes over the data. Default: 20.
        batch_size: samples per batch. Default: 32.
        shuffle, validation_split, verbose, callbacks: as ``Sequential.fit``.
            Defaults: True, 0.0, 0, None.
        random_state: int, RandomState or None: the model's seed. Default: None
            (a fresh seed from the OS each fit).
        **params: the build function's arguments, and ``fit__<name>`` for any
            other ``Sequential.fit`` argument.

    Attributes: ``model_`` (the trained Sequential), ``history_`` (its
    ``History.history``), ``n_features_in_``, ``feature_names_in_``{attrs}.
"""


class NeuralNetClassifier(ClassifierMixin, _NeuralNet):
    __doc__ = """A gpunn model as a scikit-learn classifier.

    Labels of any type are encoded to ``0..n_classes-1`` for a model compiled with
    softmax cross-entropy; a model compiled with binary cross-entropy gets a 0/1
    column (binary, one output), one-hot rows, or the indicator matrix of a
    multilabel ``y``. ``predict_proba`` applies the loss's link (softmax or
    sigmoid) unless the model already ends in it.

    Example::

        def build(n_features_in, n_classes, hidden=64, seed=None):
            model = gpunn.Sequential([Dense(hidden, activation="relu"),
                                      Dense(n_classes)],
                                     input_dim=n_features_in, seed=seed)
            model.compile("softmax_cross_entropy", "adam")
            return model

        search = GridSearchCV(NeuralNetClassifier(build, epochs=10),
                              {"hidden": [32, 128]}).fit(X, y)
""" + _ARGS.format(classes=", ``n_classes``, ``multilabel``", attrs=", ``classes_``")

    def fit(self, X, y, sample_weight=None):
        """Builds and trains a model on ``X`` ``(n, n_features)`` and labels ``y``
        ``(n,)`` (or a multilabel indicator matrix); returns self."""
        from sklearn.utils.multiclass import (
            check_classification_targets,
            type_of_target,
        )
        from sklearn.utils.validation import column_or_1d, validate_data

        X, y = validate_data(
            self, X, y, multi_output=True, dtype=(np.float64, np.float32)
        )
        check_classification_targets(y)
        self._multilabel = type_of_target(y) == "multilabel-indicator"
        if self._multilabel:
            self.classes_, self._encoded = np.arange(y.shape[1]), y
        else:
            y = column_or_1d(y, warn=True)
            self.classes_, self._encoded = np.unique(y, return_inverse=True)
        n = len(self.classes_)
        injected = {
            "n_features_in": X.shape[1],
            "n_outputs": n,
            "n_classes": n,
            "multilabel": self._multilabel,
        }
        return self._fit_model(X, self._encoded, sample_weight, injected)

    def _targets(self, model, encoded):
        task, n = model.loss.task, len(self.classes_)
        if task == "multiclass" and not self._multilabel:
            return encoded
        if task == "binary":
            if self._multilabel:
                return encoded.astype(np.float64)
            if n == 2 and model.output_dim == 1:
                return encoded.reshape(-1, 1).astype(np.float64)
            return np.eye(n)[encoded]
        raise ValueError(
            f"NeuralNetClassifier needs a model compiled with a classification loss "
            f"(softmax cross-entropy{'' if self._multilabel else ' or binary'} "
            f"cross-entropy{' for multilabel targets' if self._multilabel else ''}"
            f"), got {type(model.loss).__name__}"
        )

    def predict_proba(self, X):
        """Class probabilities ``(n, n_classes)`` in ``classes_`` order."""
        out = self._predict_raw(X)
        model = self.model_
        link = model.loss.link
        if link is not None and not _ends_in(model, link):
            out = _softmax(out) if link == "softmax" else _sigmoid(out)
        if out.shape[1] == 1 and len(self.classes_) == 2:
            out = np.hstack([1 - out, out])
        return out

    def predict(self, X):
        """Labels ``(n,)`` (an indicator matrix for multilabel targets)."""
        proba = self.predict_proba(X)
        if self._multilabel:
            return (proba > 0.5).astype(int)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class NeuralNetRegressor(RegressorMixin, _NeuralNet):
    __doc__ = """A gpunn model (compiled with a regression loss) as a scikit-learn
    regressor; ``y`` ``(n,)`` or ``(n, n_targets)``.
""" + _ARGS.format(classes="", attrs="")

    def fit(self, X, y, sample_weight=None):
        """Builds and trains a model on ``X`` and targets ``y``; returns self."""
        from sklearn.utils.validation import validate_data

        X, y = validate_data(
            self,
            X,
            y,
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
        )
        self._y_1d = y.ndim == 1
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        injected = {"n_features_in": X.shape[1], "n_outputs": n_outputs}
        return self._fit_model(X, y, sample_weight, injected)

    def _targets(self, model, y):
        if model.loss.task != "regression":
            raise ValueError(
                "NeuralNetRegressor needs a model compiled with a regression loss "
                f"(mse, mae, huber, ...), got {type(model.loss).__name__}"
            )
        return y.astype(np.float64)

    def predict(self, X):
        """Predictions ``(n,)`` (``(n, n_targets)`` for 2-D targets)."""
        out = self._predict_raw(X)
        return out.ravel() if self._y_1d else out


def _ends_in(model, link: str) -> bool:
    """Whether the model's last activation is ``link`` (its predict gives
    probabilities already)."""
    from gpunn.layers import Activation, Dense

    last = model.layers[-1]
    head = last.activation if isinstance(last, Dense) else last
    return isinstance(head, Activation) and head.activation == link


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
