"""Dynamic loss scaling for float16 training, with ``torch.amp.GradScaler``'s rules."""

from __future__ import annotations

import math

import numpy as np

from gpunn.checks import check_int, check_real
from gpunn.errors import ArgumentError, NonFiniteError

# Below this the scale itself would flush float16 gradients to zero: the model is
# producing non-finite values on its own, whatever the scale.
MIN_SCALE = 2.0**-24
_STATE_KEYS = (
    "scale",
    "growth_factor",
    "backoff_factor",
    "growth_interval",
    "_growth_tracker",
    "skipped_steps",
)


def _float32(value: float) -> float:
    """``value`` rounded to float32, as torch keeps its scale (inf past its range)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


class LossScaler:
    """Dynamic loss scaling: the loss's gradient is multiplied by ``scale`` before
    backpropagating through float16 layers, and the float32 gradients are divided by
    it (``grad * float32(1 / scale)``) before clipping, the finite check and the
    update. A step whose gradients hold an infinity or a NaN is skipped and the scale
    backs off; ``growth_interval`` consecutive good steps grow it. These are
    ``torch.amp.GradScaler``'s rules and defaults:

    - overflow: ``scale *= backoff_factor``, the growth tracker resets to 0, the step
      is skipped (counted in ``skipped_steps``);
    - otherwise the tracker counts the step; when it reaches ``growth_interval``,
      ``scale *= growth_factor`` (unless that would be infinite) and it resets to 0.

    The scale is kept in float32, as torch keeps it. A scale that would fall below
    2**-24 means the model itself produces non-finite values: :meth:`update` then
    raises :class:`~gpunn.errors.NonFiniteError` and changes nothing.

    Args:
        init_scale: the first scale (> 0, finite). Default: 2.0**16.
        growth_factor: the growth multiplier (> 1). Default: 2.0.
        backoff_factor: the multiplier on overflow (in (0, 1)). Default: 0.5.
        growth_interval: good steps between growths (>= 1). Default: 2000.

    Attributes:
        scale: the current scale (also :meth:`get_scale`).
        skipped_steps: steps skipped because their gradients overflowed.

    Example::

        model = gpunn.Sequential([...], precision="mixed_float16")
        model.compile("softmax_cross_entropy", "adam")   # loss_scale="dynamic"
        model.fit(X, y)
        model.loss_scaler.scale, model.loss_scaler.skipped_steps
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ):
        self.growth_factor = check_real(
            "growth_factor", growth_factor, lo=1, lo_open=True
        )
        self.backoff_factor = check_real(
            "backoff_factor", backoff_factor, lo=0, hi=1, lo_open=True, hi_open=True
        )
        self.growth_interval = check_int("growth_interval", growth_interval, 1)
        self.scale = self._checked_scale("init_scale", init_scale)
        self._init_scale = self.scale
        self._growth_tracker = 0
        self.skipped_steps = 0

    @staticmethod
    def _checked_scale(name: str, value) -> float:
        value = check_real(name, value, lo=0, lo_open=True)
        if not math.isfinite(_float32(value)):
            raise ArgumentError(f"{name} must be finite in float32, got {value}")
        return _float32(value)

    dynamic = True  # the scale moves; a step that overflows is skipped

    def get_scale(self) -> float:
        """The current scale (as ``GradScaler.get_scale``)."""
        return self.scale

    def inv_scale(self) -> float:
        """``1 / scale`` in float32, the factor the gradients are multiplied by."""
        return _float32(1.0 / self.scale)

    def update(self, found_inf: bool) -> None:
        """Moves the scale after one step: back off when ``found_inf`` (and count the
        step as skipped), else count a good step and grow every ``growth_interval``.
        NonFiniteError, nothing changed, when the scale would fall below 2**-24."""
        if found_inf:
            scale = _float32(self.scale * self.backoff_factor)
            if scale < MIN_SCALE:
                raise NonFiniteError(
                    f"the loss scale would fall to {scale:g}, below 2**-24, after "
                    f"{self.skipped_steps + 1} skipped steps: the model produces "
                    "non-finite values at any scale (check the data, the learning "
                    "rate, or train in float32)"
                )
            self.scale, self._growth_tracker = scale, 0
            self.skipped_steps += 1
            return
        successful = self._growth_tracker + 1
        if successful == self.growth_interval:
            grown = _float32(self.scale * self.growth_factor)
            if math.isfinite(grown):
                self.scale = grown
            self._growth_tracker = 0
        else:
            self._growth_tracker = successful

    def state_dict(self) -> dict:
        """The scaler's state, JSON-able: GradScaler's keys (``scale``,
        ``growth_factor``, ``backoff_factor``, ``growth_interval``,
        ``_growth_tracker``) and ``skipped_steps``."""
        return {
            "scale": self.scale,
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "_growth_tracker": self._growth_tracker,
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict` output; ValueError naming the entry (nothing
        changed) when keys are missing or unexpected or a value is invalid."""
        if not isinstance(state, dict) or set(state) != set(_STATE_KEYS):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ArgumentError(
                f"loss scaler state must have keys {sorted(_STATE_KEYS)}, got {got}"
            )
        checked = LossScaler(
            state["scale"],
            state["growth_factor"],
            state["backoff_factor"],
            state["growth_interval"],
        )
        tracker = check_int("_growth_tracker", state["_growth_tracker"], 0)
        if tracker >= checked.growth_interval:
            raise ArgumentError(
                f"_growth_tracker must be < growth_interval "
                f"({checked.growth_interval}), got {tracker}"
            )
        skipped = check_int("skipped_steps", state["skipped_steps"], 0)
        init_scale = self._init_scale  # the constructor's: get_config() keeps it
        self.__dict__.update(checked.__dict__)
        self._init_scale = init_scale
        self._growth_tracker, self.skipped_steps = tracker, skipped

    def get_config(self) -> dict:
        """The constructor arguments (saved with a model's compile config)."""
        return {
            "init_scale": self._init_scale,
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
        }

    def __repr__(self) -> str:
        return (
            f"LossScaler(scale={self.scale:g}, growth_factor={self.growth_factor}, "
            f"backoff_factor={self.backoff_factor}, "
            f"growth_interval={self.growth_interval})"
        )


def get(loss_scale, policy) -> LossScaler | None:
    """The scaler ``compile(loss_scale=...)`` asks for: ``"dynamic"`` (a
    :class:`LossScaler` with the defaults), a positive number (a
    :class:`StaticLossScaler`), a LossScaler (used as is) or None. ``"auto"`` takes
    the policy's default: dynamic for ``mixed_float16``, none otherwise."""
    if isinstance(loss_scale, str) and loss_scale == "auto":
        loss_scale = policy.default_loss_scale
    if loss_scale is None or isinstance(loss_scale, LossScaler):
        return loss_scale
    if isinstance(loss_scale, str):
        if loss_scale != "dynamic":
            raise ArgumentError(
                "loss_scale must be 'dynamic', a positive number, a LossScaler or "
                f"None, got {loss_scale!r}"
            )
        return LossScaler()
    return StaticLossScaler(check_real("loss_scale", loss_scale, lo=0, lo_open=True))


class StaticLossScaler(LossScaler):
    """A fixed loss scale: gradients are scaled and unscaled as with
    :class:`LossScaler`, but the scale never moves, and a step whose gradients
    overflow is refused as it would be unscaled (``NonFiniteError`` naming the
    epoch and batch, or a ``TerminateOnNaN`` stop; ``model.check_finite = False``
    applies it). :meth:`update` with ``found_inf`` raises NonFiniteError.

    Args:
        scale: the scale (> 0, finite in float32).
    """

    dynamic = False

    def __init__(self, scale: float):
        super().__init__(init_scale=scale, growth_interval=1)

    def update(self, found_inf: bool) -> None:
        if found_inf:
            raise NonFiniteError(
                f"the gradients overflowed at the static loss scale {self.scale:g}: "
                "use a smaller loss_scale, or loss_scale='dynamic'"
            )

    def get_config(self) -> dict:
        return {"scale": self.scale}

    def __repr__(self) -> str:
        return f"StaticLossScaler({self.scale:g})"
