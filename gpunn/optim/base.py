"""The optimizer contract: hyperparameters plus explicit flat state.

An optimizer is bound to a model's :class:`~gpunn.arena.ParameterArena`; its state
buffers share the arena's layout, so one step is one backend update op over the flat
parameter, gradient and state arrays (one kernel launch on the GPU). The host computes
the per-step scalars (bias corrections, the scheduled lr); the op does the elementwise
work. Gradient clipping (by value, then by global norm) runs on the flat gradient just
before the update, on the device.
"""

from __future__ import annotations

import math
import numbers

from gpunn import faults
from gpunn.checks import check_int, check_real
from gpunn.errors import ArgumentError, NotBuiltError


class Optimizer:
    """Base class. Subclasses set ``state_names`` and implement ``_update(t, lr)``.

    Args:
        lr: learning rate (> 0), or a schedule: a callable ``schedule(step) -> lr``
            where ``step`` is the number of updates done so far (0-based), e.g. one of
            :mod:`gpunn.schedules`.
        clip_norm: keyword-only; when set (> 0), gradients are scaled by
            ``min(1, clip_norm / (norm + 1e-6))`` with ``norm`` their global L2 norm
            over the whole arena (``torch.nn.utils.clip_grad_norm_``). Default: None.
        clip_value: keyword-only; when set (> 0), gradients are clamped to
            ``[-clip_value, clip_value]`` first. Default: None.

    Attributes:
        lr: the learning rate the next step will use (a float: the schedule's value at
            ``steps``, or the constant, times ``lr_scale``). Assigning a float (or a
            schedule) replaces the constant or schedule and resets ``lr_scale`` to 1.
        lr_scale: a multiplier (> 0) on the schedule or constant (ReduceLROnPlateau).
        schedule: the lr schedule, or None for a constant lr.
        steps: number of updates done so far.
        grad_norm: the global gradient norm before norm clipping at the last step (a
            0-d device array; None when ``clip_norm`` is off or before the first step).
        state: the flat state buffers (``state_names``), saved by checkpoints along
            with :meth:`host_state`.
    """

    state_names: tuple[str, ...] = ()
    host_scalars: tuple[str, ...] = ()  # float attributes saved by host_state()
    # whether _update passes param_copy=arena.compute to its backend op (every
    # built-in optimizer does, so mixed precision's 16-bit weights are written in the
    # same pass); a class that does not leaves them to be re-cast before the next
    # forward. A subclass that overrides _update without saying is taken not to.
    writes_param_copy = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "_update" in vars(cls) and "writes_param_copy" not in vars(cls):
            cls.writes_param_copy = False

    def __init__(self, lr, *, clip_norm=None, clip_value=None):
        self.lr = lr
        self.clip_norm = _optional_positive("clip_norm", clip_norm)
        self.clip_value = _optional_positive("clip_value", clip_value)
        self.steps = 0
        self.grad_norm = None
        self.arena = None
        self.state: dict = {}

    # ---------------------------------------------------------------- learning rate
    @property
    def lr(self) -> float:
        return self._lr_at(self.steps)

    @lr.setter
    def lr(self, value) -> None:
        if callable(value) and not isinstance(value, numbers.Number):
            self._lr, self._schedule = None, value
        else:
            self._lr, self._schedule = check_real("lr", value, lo=0, lo_open=True), None
        self._lr_scale = 1.0

    @property
    def lr_scale(self) -> float:
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, value) -> None:
        self._lr_scale = check_real("lr_scale", value, lo=0, lo_open=True)

    @property
    def schedule(self):
        return self._schedule

    def _lr_at(self, step: int) -> float:
        """The lr of update number ``step + 1``; ValueError naming the step when the
        schedule gives a negative or non-finite value."""
        if self._schedule is None:
            return self._lr * self._lr_scale
        value = self._schedule(step)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ArgumentError(
                f"lr schedule must return a number, got {value!r} at step {step}"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise ArgumentError(
                f"lr schedule must return a finite lr >= 0, got {value} at step {step}"
            )
        return value * self._lr_scale

    # ---------------------------------------------------------------- state
    def bind(self, arena) -> None:
        """Attaches the optimizer to ``arena`` and allocates zeroed state buffers.

        Binding again to the same arena keeps the state (re-compiling a model does not
        reset Adam's moments); an optimizer serves one model only.
        """
        if self.arena is arena:
            return
        if self.arena is not None:
            raise ArgumentError(
                f"this {type(self).__name__} already belongs to another model; "
                "create one optimizer per model"
            )
        self.state = {name: arena.zeros_like_params() for name in self.state_names}
        self.arena, self.steps, self.grad_norm = arena, 0, None
        self._init_state()

    def _init_state(self) -> None:
        """Sets initial state values after :meth:`bind` (zeros need nothing)."""

    def host_state(self) -> dict:
        """The host-side state a checkpoint saves next to the ``state`` buffers, as
        JSON-able values: ``steps``, ``lr_scale`` and the optimizer's
        ``host_scalars`` (e.g. NAdam's ``mu_product``)."""
        extra = {name: getattr(self, name) for name in self.host_scalars}
        return {"steps": self.steps, "lr_scale": self._lr_scale, **extra}

    def load_host_state(self, state: dict) -> None:
        """Restores :meth:`host_state` output (after :meth:`bind`, which resets it);
        ValueError naming the entry (and nothing changed) when keys are missing or
        unexpected or a value is invalid."""
        expected = {"steps", "lr_scale", *self.host_scalars}
        if not isinstance(state, dict) or set(state) != expected:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ArgumentError(
                f"host state must have keys {sorted(expected)}, got {got}"
            )
        steps = check_int("steps", state["steps"], 0)
        lr_scale = check_real("lr_scale", state["lr_scale"], lo=0, lo_open=True)
        extra = {name: check_real(name, state[name]) for name in self.host_scalars}
        self.steps, self._lr_scale = steps, lr_scale
        for name, value in extra.items():
            setattr(self, name, value)

    def snapshot(self) -> dict:
        """An in-memory copy of everything a step or an lr change alters (state
        buffers, :meth:`host_state`, the lr or schedule, ``grad_norm``), for
        :meth:`restore`: e.g. ``lr_find`` tries steps and undoes them. Checkpoints
        save ``state`` and :meth:`host_state` instead."""
        return {
            "state": {name: buf.copy() for name, buf in self.state.items()},
            "host": self.host_state(),
            "lr": (self._lr, self._schedule),
            "grad_norm": self.grad_norm,
        }

    def restore(self, snapshot: dict) -> None:
        """Puts back what :meth:`snapshot` copied (into the same state buffers)."""
        if set(snapshot["state"]) != set(self.state):
            raise ArgumentError(
                f"snapshot has state {sorted(snapshot['state'])}, this optimizer "
                f"{sorted(self.state)}"
            )
        self.load_host_state(snapshot["host"])
        for name, buf in snapshot["state"].items():
            self.state[name][...] = buf
        self._lr, self._schedule = snapshot["lr"]
        self.grad_norm = snapshot["grad_norm"]

    # ---------------------------------------------------------------- stepping
    def step(self) -> None:
        """Applies one update to the arena's parameters from its gradients: checks the
        scheduled lr, clips the gradients if asked, updates. The step counter moves
        only once the update has been applied; a Ctrl-C arriving meanwhile is raised
        after it (:func:`gpunn.faults.uninterrupted`), so parameters, state and
        counter never disagree."""
        if self.arena is None:
            raise NotBuiltError(
                f"{type(self).__name__} is not bound to a model; call model.compile"
            )
        lr = self._lr_at(self.steps)
        with faults.uninterrupted():
            self._clip_grads()
            self._update(self.steps + 1, lr)
            if self.writes_param_copy:  # mixed precision: the 16-bit copy is fresh
                self.arena.compute_written()
            else:
                self.arena.params_changed()
            self.steps += 1

    def state_stays_finite(self):
        """Whether a state buffer that only grows (Adagrad's sum of squared
        gradients) stays finite with this step's gradients, element by element, as
        a 0-d device bool; None for optimizers without one. The finite check
        refuses a step that would make it overflow: the buffer would turn infinite
        and freeze those weights."""
        return

    def _clip_grads(self) -> None:
        backend, grads = self.arena.backend, self.arena.grads
        if self.clip_value is not None:
            backend.clip_by_value_(grads, self.clip_value)
        if self.clip_norm is not None:
            self.grad_norm = backend.clip_by_norm_(grads, self.clip_norm)

    def _update(self, t: int, lr: float) -> None:
        """Applies update number ``t`` (1-based) with learning rate ``lr``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- reporting
    def hyperparameters(self) -> dict:
        """The constructor arguments, JSON-able, for summaries and checkpoints: ``lr``
        is the constant, or the schedule's ``get_config()`` (else its repr); the clip
        arguments appear when set."""
        schedule = self._schedule
        if schedule is None:
            lr = self._lr
        elif hasattr(schedule, "get_config"):
            lr = schedule.get_config()
        else:
            lr = repr(schedule)
        clip = {"clip_norm": self.clip_norm, "clip_value": self.clip_value}
        clip = {k: v for k, v in clip.items() if v is not None}
        return {"lr": lr, **self._hyperparameters(), **clip}

    def _hyperparameters(self) -> dict:
        """The subclass's own constructor arguments (all but lr and clipping)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def check_betas(betas) -> tuple[float, float]:
    """A pair ``(beta1, beta2)``, each in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ArgumentError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return (
        check_real("betas[0]", betas[0], lo=0, hi=1, hi_open=True),
        check_real("betas[1]", betas[1], lo=0, hi=1, hi_open=True),
    )


def _optional_positive(name: str, value):
    return None if value is None else check_real(name, value, lo=0, lo_open=True)
