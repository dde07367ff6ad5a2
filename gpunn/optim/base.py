"""The optimizer contract: hyperparameters plus explicit flat state.

An optimizer is bound to a model's :class:`~gpunn.arena.ParameterArena`; its state
buffers share the arena's layout, so one step is one backend update op over the flat
parameter, gradient and state arrays (one kernel launch on the GPU). The host computes
the per-step scalars (bias corrections, the current lr); the op does the elementwise work.
"""

from __future__ import annotations

from gpunn.checks import check_real
from gpunn.errors import NotBuiltError


class Optimizer:
    """Base class. Subclasses set ``state_names`` and implement ``_update()``.

    Attributes:
        lr: learning rate; may be changed between steps (schedules do this).
        steps: number of updates done so far.
    """

    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float):
        self.lr = check_real("lr", lr, lo=0, lo_open=True)
        self.steps = 0
        self.arena = None
        self.state: dict = {}

    def bind(self, arena) -> None:
        """Attaches the optimizer to ``arena`` and allocates zeroed state buffers.

        Binding again to the same arena keeps the state (re-compiling a model does not
        reset Adam's moments); an optimizer serves one model only.
        """
        if self.arena is arena:
            return
        if self.arena is not None:
            raise ValueError(
                f"this {type(self).__name__} already belongs to another model; "
                "create one optimizer per model"
            )
        self.state = {name: arena.zeros_like_params() for name in self.state_names}
        self.arena, self.steps = arena, 0

    def step(self) -> None:
        """Applies one update to the arena's parameters from its gradients. The step
        counter moves only once the update has been applied."""
        if self.arena is None:
            raise NotBuiltError(
                f"{type(self).__name__} is not bound to a model; call model.compile"
            )
        self._update(self.steps + 1)
        self.steps += 1

    def _update(self, t: int) -> None:
        """Applies update number ``t`` (1-based)."""
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        """The constructor arguments, for summaries and checkpoints."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"
