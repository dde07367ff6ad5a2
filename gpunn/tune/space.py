"""Search spaces: the distributions a random search draws from, and how a space is
checked and drawn.

A space maps each hyperparameter name to a list of values (a grid axis, or a uniform
choice in a random search) or, for a random search only, to a :class:`Distribution`
made by :func:`choice`, :func:`uniform`, :func:`loguniform` or :func:`randint`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from gpunn.checks import check_real

RESERVED = ("rank", "trial", "score", "epoch", "seconds", "error")


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
