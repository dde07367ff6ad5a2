"""Any gpunn model as a scikit-learn estimator, in the manner of skorch and
scikeras: :class:`NeuralNetClassifier` and :class:`NeuralNetRegressor` wrap a
function that returns a compiled :class:`gpunn.Sequential`.

Parameters: the wrapper's own (``build_fn``, ``epochs``, ``batch_size``, ...), the
build function's arguments under their plain names (``hidden_layer_sizes=(64,)``)
and ``fit__<name>`` for any other ``Sequential.fit`` argument
(``fit__accumulate_steps=2``). ``get_params`` lists the build function's arguments
with their defaults, so ``GridSearchCV`` can tune architectures with
``{"hidden_layer_sizes": [(64,), (256, 256)]}``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from gpunn.sklearn import _builders, _model_state

FIT_PREFIX = "fit__"


class _NeuralNet(BaseEstimator):
    """The parameter routing and fitting shared by both wrappers."""

    _own = (
        "build_fn",
        "epochs",
        "batch_size",
        "shuffle",
        "validation_split",
        "verbose",
        "callbacks",
        "random_state",
    )

    def __init__(
        self,
        build_fn=None,
        *,
        epochs=20,
        batch_size=32,
        shuffle=True,
        validation_split=0.0,
        verbose=0,
        callbacks=None,
        random_state=None,
        **params,
    ):
        self.build_fn = build_fn
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.validation_split = validation_split
        self.verbose = verbose
        self.callbacks = callbacks
        self.random_state = random_state
        self._params = dict(params)

    # ---------------------------------------------------------------- parameters
    def _build_fn(self):
        return _builders.mlp if self.build_fn is None else self.build_fn

    def get_params(self, deep: bool = True) -> dict:
        """The wrapper's parameters, the build function's arguments (with their
        defaults) and the ``fit__`` arguments given."""
        tunable, _ = _builders.signature(self._build_fn())
        params = {name: getattr(self, name) for name in self._own}
        params.update({k: v for k, v in tunable.items() if v is not _builders.EMPTY})
        params.update(self._params)
        return params

    def set_params(self, **params):
        """Sets wrapper parameters, build function arguments and ``fit__``
        arguments. Like ``__init__`` it takes any name: ``fit`` checks that each
        is an argument of the build function."""
        for name, value in params.items():
            if name in self._own:
                setattr(self, name, value)
            else:
                self._params[name] = value
        return self

    def __getattr__(self, name):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}"
        )

    # ---------------------------------------------------------------- fitting
    def _build(self, injected: dict):
        fn = self._build_fn()
        tunable, _ = _builders.signature(fn)
        params = self.get_params()
        args = {
            k: v
            for k, v in params.items()
            if k not in self._own and not k.startswith(FIT_PREFIX)
        }
        _, takes_kwargs = _builders.signature(fn)
        unknown = [k for k in args if k not in tunable and not takes_kwargs]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} got {unknown}, which build_fn "
                f"{getattr(fn, '__name__', fn)!r} does not take; its arguments are "
                f"{sorted(tunable)} (and fit__<Sequential.fit argument>)"
            )
        missing = [
            k for k, v in tunable.items() if v is _builders.EMPTY and k not in args
        ]
        if missing:
            raise TypeError(
                f"build_fn needs the argument(s) {missing}: pass them to "
                f"{type(self).__name__}(...)"
            )
        injected["seed"] = _seed(self.random_state)
        return _builders.call(fn, args, injected)

    def _fit_model(self, X, y, sample_weight, injected: dict):
        """Builds the model, encodes ``y`` for its loss (``self._targets``) and
        trains it; returns self."""
        model = self._build(injected)
        if not model.built:
            model.build(X.shape[1])
        y = self._targets(model, y)
        if sample_weight is not None:
            sample_weight = _mean_one(sample_weight, X)
        fit_args = {
            k[len(FIT_PREFIX) :]: v
            for k, v in self._params.items()
            if k.startswith(FIT_PREFIX)
        }
        history = model.fit(
            X,
            y,
            epochs=self.epochs,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            validation_split=self.validation_split,
            verbose=self.verbose,
            callbacks=self.callbacks,
            sample_weight=sample_weight,
            **fit_args,
        )
        self.model_ = model
        self.history_ = dict(history.history)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _check_input(self, X):
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=(np.float64, np.float32))

    def _predict_raw(self, X):
        """The model's outputs for ``X`` in ``X``'s float dtype (after checks)."""
        X = self._check_input(X)
        return self.model_.predict(X).astype(X.dtype, copy=False)

    # ---------------------------------------------------------------- pickling
    def __getstate__(self):
        """The fitted model travels as the bytes of its ``model.save`` file."""
        state = dict(super().__getstate__())
        if "model_" in state:
            state["model_"] = _model_state.to_bytes(state["model_"])
        return state

    def __setstate__(self, state):
        if isinstance(state.get("model_"), bytes):
            state = {**state, "model_": _model_state.from_bytes(state["model_"])}
        super().__setstate__(state)


def _mean_one(sample_weight, X):
    """The checked sample weights scaled to average 1: gpunn's losses average
    ``weight * loss`` over the batch size, so a weighted fit then matches a fit on
    repeated samples (in full batches)."""
    from sklearn.utils.validation import _check_sample_weight

    sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
    total = sample_weight.sum()
    if total <= 0:
        raise ValueError("sample_weight must not be all zero (nothing to fit)")
    return sample_weight * (len(sample_weight) / total)


def _seed(random_state) -> int:
    """An int seed for the model from ``random_state`` (None: from the OS)."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    return int(random_state)
