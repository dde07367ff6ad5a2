"""Hyperparameter search: grid and random search over a model-building function.

Every trial builds a fresh model with ``build_fn(**params)``, trains it with ``fit`` on
the same training samples and scores it on the same validation samples, so trials
differ only by their parameters (give the model a fixed ``seed`` in ``build_fn`` for
reproducible results). A trial's score is the best epoch's ``monitor`` value, the
value early stopping with ``restore_best_weights`` would keep.

Example::

    def build(lr, units):
        model = gpunn.Sequential([Dense(units, activation="relu"), Dense(10)], seed=0)
        model.compile("softmax_cross_entropy", gpunn.optim.Adam(lr))
        return model

    space = {"lr": loguniform(1e-4, 1e-1), "units": [64, 128, 256]}
    results = random_search(build, space, X, y, n_trials=20, epochs=5)
    print(results)  # the trials, best first
    results.best_params  # {"lr": 0.0031..., "units": 256}
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from gpunn.callbacks import monitor_mode
from gpunn.checks import check_int, check_real
from gpunn.errors import InvalidInputError

RESERVED = ("rank", "trial", "score", "epoch", "seconds", "error")
SET_BY_SEARCH = ("epochs", "batch_size", "validation_data", "validation_split")
SET_BY_SEARCH += ("verbose", "X", "y")


# ---------------------------------------------------------------- distributions
class Distribution:
    """A prior over one hyperparameter for :func:`random_search`; ``sample(rng)`` draws
    one value from a ``numpy.random.Generator``. Made by :func:`choice`,
    :func:`uniform`, :func:`loguniform` and :func:`randint`."""

    def __init__(self, kind: str, draw: Callable, **args):
        self.kind, self.args, self._draw = kind, args, draw

    def sample(self, rng: np.random.Generator):
        return self._draw(rng)

    def __repr__(self) -> str:
        return f"{self.kind}({', '.join(repr(v) for v in self.args.values())})"


def choice(values) -> Distribution:
    """One of ``values``, each with probability ``1 / len(values)`` (what a plain list
    means in a random search space)."""
    values = _as_list("values", values)
    return Distribution(
        "choice", lambda rng: values[int(rng.integers(len(values)))], values=values
    )


def uniform(lo: float, hi: float) -> Distribution:
    """A float uniform in ``[lo, hi)``."""
    lo, hi = _interval(lo, hi, positive=False)
    return Distribution("uniform", lambda rng: float(rng.uniform(lo, hi)), lo=lo, hi=hi)


def loguniform(lo: float, hi: float) -> Distribution:
    """A float in ``[lo, hi]`` whose log is uniform (``0 < lo < hi``): for learning
    rates and weight decays, where 1e-4 to 1e-3 matters as much as 1e-2 to 1e-1."""
    lo, hi = _interval(lo, hi, positive=True)

    def draw(rng):
        value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return min(max(value, lo), hi)  # exp(log(x)) may round past a bound

    return Distribution("loguniform", draw, lo=lo, hi=hi)


def randint(lo: int, hi: int) -> Distribution:
    """An int uniform in ``[lo, hi)``: ``hi`` excluded, as ``numpy``'s ``integers``
    and ``scipy.stats.randint``."""
    for name, value in (("lo", lo), ("hi", hi)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"randint {name} must be an int, got {value!r}")
    if hi <= lo:
        raise ValueError(f"randint needs lo < hi, got lo={lo}, hi={hi}")
    lo, hi = int(lo), int(hi)
    return Distribution("randint", lambda rng: int(rng.integers(lo, hi)), lo=lo, hi=hi)


def _interval(lo, hi, positive: bool):
    lo = check_real("lo", lo, lo=0 if positive else None, lo_open=True)
    hi = check_real("hi", hi)
    if hi <= lo:
        raise ValueError(f"needs lo < hi, got lo={lo}, hi={hi}")
    return lo, hi


def _as_list(name: str, values) -> list:
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if not isinstance(values, (list, tuple, range)) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty list of values, got {values!r}")
    return list(values)


# ---------------------------------------------------------------- results
@dataclass
class Trial:
    """One trained configuration.

    Attributes:
        index: position in the order the trials ran (0-based).
        params: the arguments given to ``build_fn``.
        score: the best epoch's ``monitor`` value (nan when the trial failed or every
            value was nan).
        epoch: that epoch, 0-based as ``History.epoch`` (None when no score).
        logs: the last epoch's logs (``{"loss": ..., "val_loss": ..., ...}``).
        seconds: wall time of ``fit``.
        history: ``history.history`` of the trial's ``fit``.
        error: why the trial failed (training diverged), else None.
    """

    index: int
    params: dict
    score: float
    epoch: int | None
    logs: dict = field(default_factory=dict)
    seconds: float = 0.0
    history: dict = field(default_factory=dict)
    error: str | None = None


class SearchResults:
    """The trials of a search, sorted best first (failed trials last, ties in run
    order), with ``best_params``, ``best_score``, ``rows()`` and ``table()``."""

    def __init__(self, trials: list[Trial], monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        sign = -1.0 if mode == "max" else 1.0
        self.trials = sorted(
            trials, key=lambda t: (math.isnan(t.score), sign * t.score, t.index)
        )

    @property
    def best(self) -> Trial:
        return self.trials[0]

    @property
    def best_params(self) -> dict:
        return dict(self.best.params)

    @property
    def best_score(self) -> float:
        return self.best.score

    def rows(self) -> list[dict]:
        """One flat dict per trial, best first: ``rank`` (1 = best), ``trial``, the
        params, ``score``, ``epoch``, ``seconds``, ``error``, then the last epoch's
        logs prefixed ``final_`` (``final_val_loss``, ...)."""
        return [
            {
                "rank": rank,
                "trial": t.index,
                **t.params,
                "score": t.score,
                "epoch": t.epoch,
                "seconds": t.seconds,
                "error": t.error,
                **{f"final_{k}": v for k, v in t.logs.items()},
            }
            for rank, t in enumerate(self.trials, 1)
        ]

    def table(self) -> str:
        """The trials as an aligned text table, best first."""
        names = list(self.trials[0].params)
        header = ["rank", "trial", *names, f"{self.mode} {self.monitor}", "epoch", "s"]
        body = [
            [rank, t.index, *(t.params[n] for n in names)]
            + [t.score, "-" if t.epoch is None else t.epoch, t.seconds]
            for rank, t in enumerate(self.trials, 1)
        ]
        cells = [header] + [[_cell(v) for v in row] for row in body]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        right = [isinstance(v, (int, float)) for v in body[0]]
        lines = [
            "  ".join(
                c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)
            )
            for row in cells
        ]
        return "\n".join(line.rstrip() for line in lines)

    __str__ = table

    def __repr__(self) -> str:
        return (
            f"SearchResults({len(self.trials)} trials, best {self.monitor}="
            f"{self.best_score:.6g} with {self.best.params})"
        )


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------- searches
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


def _check_space(space, allow_distributions: bool) -> dict:
    if not isinstance(space, Mapping) or not space:
        raise ValueError(
            f"space must be a non-empty dict name -> values, got {space!r}"
        )
    checked = {}
    for name, values in space.items():
        if not isinstance(name, str) or name in RESERVED or name.startswith("final_"):
            raise ValueError(
                f"space names must be strings other than {list(RESERVED)} and not "
                f"start with 'final_', got {name!r}"
            )
        if isinstance(values, Distribution) and not allow_distributions:
            raise ValueError(
                f"space[{name!r}] is a distribution; grid_search needs a list of "
                "values (use random_search for distributions)"
            )
        if not isinstance(values, Distribution):
            values = _as_list(f"space[{name!r}]", values)
        checked[name] = values
    return checked


def _draw(space: dict, n_trials: int, rng: np.random.Generator) -> list[dict]:
    sizes = [len(v) for v in space.values() if isinstance(v, list)]
    n_points = math.prod(sizes)
    if len(sizes) < len(space) or n_points > 2**62:
        return [
            {
                k: choice(v).sample(rng) if isinstance(v, list) else v.sample(rng)
                for k, v in space.items()
            }
            for _ in range(n_trials)
        ]
    picks = rng.choice(n_points, size=min(n_trials, n_points), replace=False)
    return [_grid_point(space, int(i)) for i in picks]


def _grid_point(space: dict, index: int) -> dict:
    """Point ``index`` of the grid in ``itertools.product`` order."""
    point = {}
    for name, values in reversed(space.items()):
        index, digit = divmod(index, len(values))
        point[name] = values[digit]
    return {name: point[name] for name in space}


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
