"""The classes :func:`gpunn.accel.install` puts in ``sklearn.neural_network``'s
place: gpunn's estimators (themselves subclasses of scikit-learn's) that hand a
call to scikit-learn's own code, on the same object, when gpunn cannot run it
exactly. The handing over is counted and logged by :mod:`._registry`.

What goes to scikit-learn:

- a subclass defined by user code (its overrides may rely on scikit-learn's
  private methods, which gpunn does not call);
- sparse input whose dense form would exceed ``max_dense_bytes`` (gpunn densifies
  sparse input);
- pickling: an accelerated estimator pickles as scikit-learn's own class with
  plain scikit-learn state, so the file loads anywhere scikit-learn does (without
  gpunn), and once loaded it is scikit-learn's estimator.
"""

from __future__ import annotations

import copy
import copyreg
import types

import numpy as np
import sklearn
from sklearn.neural_network import _multilayer_perceptron as _sk
from sklearn.utils.metaestimators import available_if

from gpunn import sklearn as _gs
from gpunn.accel import _registry

SETTINGS = {"dtype": None, "max_dense_bytes": 2**31}
PICKLED = "a pickled estimator loads as scikit-learn's own class"


def _init_with_dtype(init, dtype):
    """A copy of the estimator ``__init__`` ``init`` whose ``dtype`` default is
    ``dtype`` (the signature is what ``get_params`` and ``clone`` read)."""
    new = types.FunctionType(
        init.__code__,
        init.__globals__,
        init.__name__,
        init.__defaults__,
        init.__closure__,
    )
    new.__kwdefaults__ = {**init.__kwdefaults__, "dtype": dtype}
    new.__doc__, new.__qualname__ = init.__doc__, init.__qualname__
    return new


class _Accelerated:
    """Dispatch between gpunn (the next class in the MRO) and scikit-learn's
    original class ``_sk_class``."""

    _sk_class: type = None
    _accel_types: tuple = ()

    def _accel_reason(self, X=None) -> str | None:
        cls = type(self)
        if cls not in _Accelerated._accel_types:
            return (
                f"{cls.__name__} is a subclass, whose overrides may use "
                "scikit-learn's internals"
            )
        if X is not None and hasattr(X, "toarray") and hasattr(X, "shape"):
            size = X.shape[0] * X.shape[1] * np.dtype(X.dtype).itemsize
            if size > SETTINGS["max_dense_bytes"]:
                return (
                    f"sparse X of shape {X.shape} would take {size / 2**30:.1f} GiB "
                    "dense (gpunn.accel.install(max_dense_bytes=...))"
                )
        return None

    def _accel_run(self, method: str, X, *args, **kwargs):
        reason = self._accel_reason(X)
        name = self._sk_class.__name__
        if reason is None:
            if method in ("fit", "partial_fit"):
                _registry.record(name, method, None)
            return getattr(super(), method)(X, *args, **kwargs)
        _registry.record(name, method, reason)
        self._accel_handover()
        return getattr(self._sk_class, method)(self, X, *args, **kwargs)

    def _accel_handover(self) -> None:
        """Puts scikit-learn's own optimizer object where its code expects one."""
        solver = getattr(self, "_optimizer", None)
        if hasattr(solver, "to_sklearn"):
            params = list(self.coefs_) + list(self.intercepts_)
            self._optimizer = solver.to_sklearn(solver.net, params)

    def _gpunn_dtype(self, X) -> np.dtype:
        if self.dtype is None and SETTINGS["dtype"] is not None:
            return np.dtype(SETTINGS["dtype"])
        return super()._gpunn_dtype(X)

    def fit(self, X, y, sample_weight=None):
        return self._accel_run("fit", X, y, sample_weight=sample_weight)

    def predict(self, X):
        return self._accel_run("predict", X)

    # ------------------------------------------------------------- copying
    def __reduce_ex__(self, protocol):
        _registry.record(self._sk_class.__name__, "pickle", PICKLED)
        state = self.__getstate__()
        state["_sklearn_version"] = sklearn.__version__
        # copyreg._reconstructor(cls, object, None) is object.__new__(cls): the
        # pickle names scikit-learn's class and copyreg, nothing of gpunn's
        return copyreg._reconstructor, (self._sk_class, object, None), state

    def __copy__(self):
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__getstate__(), memo))
        return new


_DOC = """scikit-learn's ``{name}`` as ``gpunn.accel`` installs it:
    :class:`gpunn.sklearn.{name}` with ``dtype=None`` by default (the input's
    dtype, as scikit-learn; ``gpunn.accel.install(dtype="float32")`` changes
    what None means), falling back to scikit-learn's code for what gpunn cannot
    run exactly (see :mod:`gpunn.accel`).
"""


class MLPClassifier(_Accelerated, _gs.MLPClassifier):
    __doc__ = _DOC.format(name="MLPClassifier")
    __init__ = _init_with_dtype(_gs.MLPClassifier.__init__, None)
    _sk_class = _sk.MLPClassifier

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        return self._accel_run(
            "partial_fit", X, y, sample_weight=sample_weight, classes=classes
        )

    def predict_proba(self, X):
        return self._accel_run("predict_proba", X)

    def predict_log_proba(self, X):
        return self._accel_run("predict_log_proba", X)


class MLPRegressor(_Accelerated, _gs.MLPRegressor):
    __doc__ = _DOC.format(name="MLPRegressor")
    __init__ = _init_with_dtype(_gs.MLPRegressor.__init__, None)
    _sk_class = _sk.MLPRegressor

    def partial_fit(self, X, y, sample_weight=None):
        return self._accel_run("partial_fit", X, y, sample_weight=sample_weight)


_Accelerated._accel_types = (MLPClassifier, MLPRegressor)
