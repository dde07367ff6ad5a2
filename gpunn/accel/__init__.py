"""``gpunn.accel``: scikit-learn's ``MLPClassifier`` and ``MLPRegressor`` on gpunn
(the GPU when there is one) without changing a line of the program.

    python -m gpunn.accel script.py [args]         # run a script accelerated
    python -m gpunn.accel -m module [args]         # run a module (pytest, ...)
    import gpunn.accel; gpunn.accel.install()      # in a notebook, before use

While installed, ``sklearn.neural_network.MLPClassifier`` and ``MLPRegressor``
are :class:`gpunn.sklearn.MLPClassifier` / ``MLPRegressor`` (subclasses of
scikit-learn's, so ``isinstance`` checks still hold) with ``dtype=None``: the
input's dtype, as scikit-learn. What gpunn cannot run exactly goes to
scikit-learn's own code on the same estimator, with one logged line per reason
(logger ``gpunn.accel``): a subclass defined by the program, sparse input too
large to densify, and pickling (a pickle holds scikit-learn's class and state,
loadable without gpunn). :func:`report` says which calls ran where.

Needs ``pip install "gpunn[sklearn]"``.
"""

from __future__ import annotations

from gpunn.accel import _registry
from gpunn.checks import check_int
from gpunn.errors import ArgumentError

__all__ = ["install", "is_installed", "report", "reset_report", "uninstall"]

_NAMES = ("MLPClassifier", "MLPRegressor")
_originals: dict = {}


def install(dtype: str | None = None, max_dense_bytes: int | None = None) -> None:
    """Makes ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` resolve
    to gpunn's for this process (for code that imports them from now on).

    Args:
        dtype: what the accelerated estimators' ``dtype=None`` means:
            None (the input's dtype, as scikit-learn), ``"float32"`` (faster, less
            exact) or ``"float64"``. Default: None.
        max_dense_bytes: sparse input whose dense copy would be larger runs on
            scikit-learn. Default: None (keep the current value, 2 GiB at start).
    """
    try:
        import sklearn.neural_network as target
    except ImportError as exc:
        raise ImportError(
            'gpunn.accel needs scikit-learn: pip install "gpunn[sklearn]"'
        ) from exc
    from gpunn.accel import _proxies

    if dtype not in (None, "float32", "float64"):
        raise ArgumentError(
            f"dtype must be None, 'float32' or 'float64', got {dtype!r}"
        )
    if max_dense_bytes is not None:
        max_dense_bytes = check_int("max_dense_bytes", max_dense_bytes, 0)
    _proxies.SETTINGS["dtype"] = dtype
    if max_dense_bytes is not None:
        _proxies.SETTINGS["max_dense_bytes"] = max_dense_bytes
    for name in _NAMES:
        if name not in _originals:
            _originals[name] = getattr(target, name)
        setattr(target, name, getattr(_proxies, name))


def uninstall() -> None:
    """Puts scikit-learn's classes back (for code that imports them from now on)."""
    import sklearn.neural_network as target

    for name, original in _originals.items():
        setattr(target, name, original)
    _originals.clear()


def is_installed() -> bool:
    """Whether :func:`install` is in effect."""
    return bool(_originals)


def report(print_fn=print) -> dict:
    """Prints (with ``print_fn``; None: silent) and returns which calls ran on
    gpunn and which on scikit-learn, and why: ``{"gpunn": n, "scikit-learn": n,
    "calls": [{"estimator", "method", "where", "reason", "count"}, ...]}``.
    Fits and partial fits are counted wherever they ran; predictions and pickling
    only when they went to scikit-learn."""
    data = _registry.snapshot()
    if print_fn is not None:
        print_fn(_registry.format_report(data))
    return data


def reset_report() -> None:
    """Starts the counts of :func:`report` afresh."""
    _registry.reset()
