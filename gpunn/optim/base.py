"""The optimizer contract: hyperparameters plus explicit flat state.

An optimizer is bound to a model's :class:`~gpunn.arena.ParameterArena`; its state
buffers share the arena's layout, so one step is one backend update op over the flat
parameter, gradient and state arrays (one kernel launch on the GPU). The host computes
the per-step scalars (bias corrections, the current lr); the op does the elementwise work.
"""

from __future__ import annotations

import math

from gpunn.errors import NotBuiltError


class Optimizer:
    """Base class. Subclasses set ``state_names`` and implement ``_update()``.

    Attributes:
        lr: learning rate; may be changed between steps (schedules do this).
        steps: number of updates done so far.
    """

    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float):
        self.lr = _check("lr", lr, lo=0, lo_open=True)
        self.steps = 0
        self.arena = None
        self.state: dict = {}

    def bind(self, arena) -> None:
        """Attaches the optimizer to ``arena`` and allocates zeroed state buffers."""
        self.arena = arena
        self.state = {name: arena.zeros_like_params() for name in self.state_names}
        self.steps = 0

    def step(self) -> None:
        """Applies one update to the arena's parameters from its gradients."""
        if self.arena is None:
            raise NotBuiltError(
                f"{type(self).__name__} is not bound to a model; call model.compile"
            )
        self.steps += 1
        self._update()

    def _update(self) -> None:
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        """The constructor arguments, for summaries and checkpoints."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _check(name: str, value, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """Validates a real hyperparameter; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    bad = not math.isfinite(value)
    if lo is not None:
        bad |= value <= lo if lo_open else value < lo
    if hi is not None:
        bad |= value >= hi if hi_open else value > hi
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_txt = "-inf" if lo is None else f"{lo:g}"
        hi_txt = "inf" if hi is None else f"{hi:g}"
        raise ValueError(
            f"{name} must be in {left}{lo_txt}, {hi_txt}{right}, got {value}"
        )
    return value
