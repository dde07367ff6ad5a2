"""Grid and random search: one validation split, one trial per point of the space,
each trial built by ``build_fn``, trained with ``fit`` and scored by ``monitor``.

See :mod:`gpunn.tune` for an example.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping

import numpy as np

from gpunn.callbacks import monitor_mode
from gpunn.checks import check_int, check_real
from gpunn.errors import InvalidInputError
from gpunn.tune.results import SearchResults, Trial, _cell
from gpunn.tune.space import _check_space, _draw

SET_BY_SEARCH = ("epochs", "batch_size", "validation_data", "validation_split")
SET_BY_SEARCH += ("verbose", "X", "y")


def grid_search(
    build_fn: Callable,
    space: Mapping,
    X,
    y,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    validation_split: float = 0.2,
    validation_data=None,
    monitor: str = "val_loss",
    mode: str = "auto",
    seed: int = 0,
    verbose: int = 0,
    fit_kwargs: dict | None = None,
) -> SearchResults:
    """Trains one model per point of the grid ``space`` and ranks them by ``monitor``.

    Args:
        build_fn: ``build_fn(**params)`` returns a compiled :class:`gpunn.Sequential`.
        space: ``{name: [values, ...]}``; the trials are the cartesian product, in
            the dict's order with the last name varying fastest.
        X, y: the data given to ``fit`` (NumPy arrays, or anything ``fit`` takes that
            supports ``len`` and indexing with an index array).
        epochs, batch_size: passed to ``fit``. Defaults: 10, 32.
        validation_split: share of the samples held out for validation, in [0, 1),
            drawn once (shuffled with ``seed``) and the same for every trial; 0 trains
            on everything (then ``monitor`` must be a training key such as
            ``"loss"``). Ignored when ``validation_data`` is given. Default: 0.2.
        validation_data: ``(X_val, y_val)`` to score on instead of a split.
        monitor: the ``history.history`` key to rank by. Default: ``"val_loss"``.
        mode: ``"min"``, ``"max"`` or ``"auto"``: as
            :func:`gpunn.callbacks.monitor_mode` infers it (accuracy-like names are
            maximized, losses and errors minimized). Default: ``"auto"``.
        seed: seeds the split (and the draws of :func:`random_search`) through a
            ``numpy.random.SeedSequence``; global RNGs are never used. Default: 0.
        verbose: 1 prints one line per trial, 0 nothing. Default: 0.
        fit_kwargs: more keyword arguments for ``fit``, e.g. ``{"shuffle": False}``
            or ``{"callbacks": [EarlyStopping(patience=3)]}`` (the same callback
            objects serve every trial: they must reset in ``on_train_begin``, as
            gpunn's do).

    Returns:
        :class:`SearchResults`, best first. A trial whose training raises
        ``FloatingPointError`` (:class:`gpunn.NonFiniteError`: it diverged) is kept
        with a nan score and its error, last, instead of ending the search.
    """
    space = _check_space(space, allow_distributions=False)
    grid = [dict(zip(space, point)) for point in itertools.product(*space.values())]
    return _search(
        grid, build_fn, X, y, epochs=epochs, batch_size=batch_size,
        validation_split=validation_split, validation_data=validation_data,
        monitor=monitor, mode=mode, seed=seed, verbose=verbose, fit_kwargs=fit_kwargs,
    )  # fmt: skip


def random_search(
    build_fn: Callable,
    space: Mapping,
    X,
    y,
    *,
    n_trials: int = 10,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 32,
    validation_split: float = 0.2,
    validation_data=None,
    monitor: str = "val_loss",
    mode: str = "auto",
    verbose: int = 0,
    fit_kwargs: dict | None = None,
) -> SearchResults:
    """Trains ``n_trials`` models with parameters drawn from ``space`` (Bergstra &
    Bengio, 2012) and ranks them by ``monitor``.

    ``space`` maps names to lists (a uniform choice) or to :func:`choice`,
    :func:`uniform`, :func:`loguniform`, :func:`randint` distributions, drawn in the
    dict's order from a generator seeded by ``seed``. When every value is a list the
    trials are distinct points of that grid, at most its size (as scikit-learn's
    ``ParameterSampler``). ``n_trials`` is an int >= 1 (default 10); every other
    argument is as in :func:`grid_search`.
    """
    space = _check_space(space, allow_distributions=True)
    n_trials = check_int("n_trials", n_trials, 1)
    seed = check_int("seed", seed, 0)
    draw_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    trials = _draw(space, n_trials, draw_rng)
    return _search(
        trials, build_fn, X, y, epochs=epochs, batch_size=batch_size,
        validation_split=validation_split, validation_data=validation_data,
        monitor=monitor, mode=mode, seed=seed, verbose=verbose, fit_kwargs=fit_kwargs,
    )  # fmt: skip


def _search(
    points, build_fn, X, y, *, epochs, batch_size, validation_split, validation_data,
    monitor, mode, seed, verbose, fit_kwargs,
) -> SearchResults:  # fmt: skip
    """Validates everything, makes the split once, then runs one trial per point."""
    if not callable(build_fn):
        raise TypeError(f"build_fn must be callable, got {type(build_fn).__name__}")
    fit_args = _fit_args(epochs, batch_size, verbose, fit_kwargs)
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"monitor must be a History key, got {monitor!r}")
    mode = monitor_mode(monitor, mode)
    seed = check_int("seed", seed, 0)
    split_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    data = _split(X, y, validation_split, validation_data, split_rng)
    if data[2] is None and monitor.startswith("val_"):
        raise ValueError(
            f"monitor={monitor!r} needs validation data: set validation_split > 0 or "
            "pass validation_data"
        )
    trials = []
    for index, params in enumerate(points):
        trials.append(
            _run_trial(index, params, build_fn, data, fit_args, monitor, mode)
        )
        if verbose:
            _report(trials[-1], len(points), monitor)
    return SearchResults(trials, monitor, mode)


def _fit_args(epochs, batch_size, verbose, fit_kwargs) -> dict:
    if verbose not in (0, 1):
        raise ValueError(f"verbose must be 0 or 1, got {verbose!r}")
    if fit_kwargs is not None and not isinstance(fit_kwargs, Mapping):
        raise TypeError(f"fit_kwargs must be a dict, got {type(fit_kwargs).__name__}")
    fit_kwargs = dict(fit_kwargs or {})
    taken = sorted(set(fit_kwargs) & set(SET_BY_SEARCH))
    if taken:
        raise ValueError(f"fit_kwargs must not set {taken}: the search sets them")
    if "sample_weight" in fit_kwargs:
        raise ValueError(
            "fit_kwargs must not set sample_weight: the search splits X and y only, "
            "so the weights would not match the training part"
        )
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    return {"epochs": epochs, "batch_size": batch_size, "verbose": 0, **fit_kwargs}


def _split(X, y, validation_split, validation_data, rng):
    """``(X_train, y_train, (X_val, y_val) or None)``; the held-out samples are a
    random ``validation_split`` share, both parts keeping the original order."""
    X, y = (v if hasattr(v, "shape") else np.asarray(v) for v in (X, y))
    if len(X) != len(y):
        raise InvalidInputError(
            f"X and y must have the same number of samples, got {len(X)} and {len(y)}"
        )
    split = check_real("validation_split", validation_split, 0, 1, hi_open=True)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        return X, y, tuple(validation_data)
    if split == 0:
        return X, y, None
    n_val = int(len(X) * split)
    if n_val == 0:
        raise ValueError(
            f"validation_split={split} holds out no sample of {len(X)}: raise it"
        )
    order = rng.permutation(len(X))
    train, val = np.sort(order[n_val:]), np.sort(order[:n_val])
    return X[train], y[train], (X[val], y[val])


def _run_trial(index, params, build_fn, data, fit_args, monitor, mode) -> Trial:
    X, y, val = data
    params = dict(params)
    model = build_fn(**params)
    if not callable(getattr(model, "fit", None)):
        raise TypeError(
            "build_fn must return a compiled gpunn.Sequential, got "
            f"{type(model).__name__}"
        )
    start = time.perf_counter()
    try:
        history = model.fit(X, y, validation_data=val, **fit_args).history
    except FloatingPointError as exc:  # diverged: the worst trial, not the end
        seconds, error = time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
        return Trial(index, params, math.nan, None, seconds=seconds, error=error)
    seconds = time.perf_counter() - start
    if monitor not in history:
        raise ValueError(
            f"monitor={monitor!r} is not in the History; it has {sorted(history)}"
        )
    score, epoch = _best(history[monitor], mode)
    logs = {key: values[-1] for key, values in history.items()}
    return Trial(index, params, score, epoch, logs, seconds, dict(history))


def _best(values, mode) -> tuple[float, int | None]:
    """The best non-nan value and its (first) epoch; ``(nan, None)`` if none."""
    values = np.asarray(values, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(values))
    if valid.size == 0:
        return math.nan, None
    pick = np.argmax if mode == "max" else np.argmin
    epoch = int(valid[pick(values[valid])])
    return float(values[epoch]), epoch


def _report(trial: Trial, n_trials: int, monitor: str) -> None:
    params = ", ".join(f"{k}={_cell(v)}" for k, v in trial.params.items())
    result = trial.error or f"{monitor}={trial.score:.4g} at epoch {trial.epoch}"
    print(f"[{trial.index + 1}/{n_trials}] {params}: {result} ({trial.seconds:.2f} s)")
