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

The package: :mod:`gpunn.tune.space` (the distributions of a random search space),
:mod:`gpunn.tune.results` (:class:`Trial`, :class:`SearchResults`) and
:mod:`gpunn.tune.search` (:func:`grid_search`, :func:`random_search`).
"""

from gpunn.tune.results import SearchResults, Trial
from gpunn.tune.search import SET_BY_SEARCH, grid_search, random_search
from gpunn.tune.space import (
    RESERVED,
    Distribution,
    choice,
    loguniform,
    randint,
    uniform,
)

__all__ = [
    "RESERVED",
    "SET_BY_SEARCH",
    "Distribution",
    "SearchResults",
    "Trial",
    "choice",
    "grid_search",
    "loguniform",
    "randint",
    "random_search",
    "uniform",
]
