"""Learning-rate schedules: ``schedule(step) -> lr`` for update number ``step``.

A schedule is any callable ``schedule(step: int) -> float`` where ``step`` counts the
optimizer updates done so far, 0-based: the first update uses ``schedule(0)``. Pass one
as an optimizer's ``lr`` (``gpunn.optim.SGD(lr=CosineDecay(0.1, 1000))``); the
optimizer multiplies its value by ``optimizer.lr_scale``. Values are Python floats
computed in float64 on the host, so a float32 model gets the same lr sequence.

Step convention: ``schedule(k)`` equals the lr PyTorch's scheduler holds after ``k``
calls of ``scheduler.step()`` when ``scheduler.step()`` follows every
``optimizer.step()`` (schedules here count updates, not epochs), and equals Keras's
``schedule(optimizer.iterations)``.

Every schedule has ``get_config()`` (a JSON-able dict with its ``"name"``, nested
schedules included) and :func:`from_config` rebuilds it; :func:`get` builds one by name.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping

from gpunn.checks import check_int, check_real
from gpunn.errors import ArgumentError, ArgumentTypeError


class Schedule:
    """Base class: ``__call__`` checks the step and returns ``float(self._value(step))``.

    Subclasses set ``name``, keep their constructor arguments as attributes of the
    same names and implement ``_value(step)``.
    """

    name = ""

    def __call__(self, step: int) -> float:
        return float(self._value(check_int("step", step, 0)))

    def _value(self, step: int) -> float:
        raise NotImplementedError

    def _args(self) -> dict:
        return dict(vars(self))  # attributes are named as the constructor arguments

    def get_config(self) -> dict:
        """The constructor arguments and ``"name"``; ``from_config`` inverts it."""
        return {"name": self.name, **self._args()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _lr(name: str, value) -> float:
    return check_real(name, value, lo=0, lo_open=True)


class Constant(Schedule):
    """``lr(step) = lr``.

    Args:
        lr: the learning rate (> 0).
    """

    name = "constant"

    def __init__(self, lr: float):
        self.lr = _lr("lr", lr)

    def _value(self, step):
        return self.lr


class ExponentialDecay(Schedule):
    """``lr(step) = lr * (1 - decay)**step``: the lr shrinks by ``decay`` each update.

    Equivalent to ``torch.optim.lr_scheduler.ExponentialLR(gamma=1 - decay)`` stepped
    after every update, and to Keras ``ExponentialDecay(lr, decay_steps=1,
    decay_rate=1 - decay)``.

    Args:
        lr: the lr of the first update (> 0).
        decay: the fraction removed per update, in [0, 1). 0 keeps the lr constant.
    """

    name = "exponential"

    def __init__(self, lr: float, decay: float):
        self.lr = _lr("lr", lr)
        self.decay = check_real("decay", decay, lo=0, hi=1, hi_open=True)

    def _value(self, step):
        return self.lr * (1.0 - self.decay) ** step


class StepDecay(Schedule):
    """``lr(step) = lr * gamma**(step // step_size)``: multiplied by ``gamma`` every
    ``step_size`` updates.

    Equivalent to ``torch.optim.lr_scheduler.StepLR(step_size, gamma)`` stepped after
    every update, and to Keras ``ExponentialDecay(lr, step_size, gamma, staircase=True)``.

    Args:
        lr: the lr of the first ``step_size`` updates (> 0).
        step_size: updates between two decays (int >= 1).
        gamma: the factor applied at each decay, in (0, 1]. Default: 0.1.
    """

    name = "step"

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        self.lr = _lr("lr", lr)
        self.step_size = check_int("step_size", step_size, 1)
        self.gamma = check_real("gamma", gamma, lo=0, hi=1, lo_open=True)

    def _value(self, step):
        return self.lr * self.gamma ** (step // self.step_size)


class PolynomialDecay(Schedule):
    """``lr(step) = (lr - end_lr) * (1 - min(step, total_steps) / total_steps)**power
    + end_lr``: from ``lr`` to ``end_lr`` in ``total_steps`` updates, then ``end_lr``.

    Keras ``PolynomialDecay(lr, decay_steps=total_steps, end_learning_rate=end_lr,
    power=power)`` (``cycle=False``); with ``end_lr=0`` it is
    ``torch.optim.lr_scheduler.PolynomialLR(total_iters=total_steps, power=power)``
    stepped after every update (torch has no end lr). ``power=1`` is linear decay.

    Args:
        lr: the lr of the first update (> 0).
        total_steps: updates until ``end_lr`` is reached (int >= 1).
        end_lr: the final lr (>= 0; larger than ``lr`` makes the lr grow, as in
            Keras). Default: 0.
        power: the polynomial's exponent (> 0). Default: 1.
    """

    name = "polynomial"

    def __init__(
        self, lr: float, total_steps: int, end_lr: float = 0.0, power: float = 1.0
    ):
        self.lr = _lr("lr", lr)
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.end_lr = check_real("end_lr", end_lr, lo=0)
        self.power = check_real("power", power, lo=0, lo_open=True)

    def _value(self, step):
        left = 1.0 - min(step, self.total_steps) / self.total_steps
        return (self.lr - self.end_lr) * left**self.power + self.end_lr


class CosineDecay(Schedule):
    """``lr(step) = min_lr + (lr - min_lr) * (1 + cos(pi * min(step, total_steps) /
    total_steps)) / 2``: half a cosine from ``lr`` to ``min_lr``, then ``min_lr``.

    SGDR without restarts (Loshchilov & Hutter, 2017). Keras ``CosineDecay(lr,
    decay_steps=total_steps, alpha=min_lr / lr)``; for ``step <= total_steps`` the
    closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=total_steps,
    eta_min=min_lr)`` stepped after every update. After ``total_steps`` torch's lr
    rises again along the cosine; here (as in Keras) it stays at ``min_lr``.

    Args:
        lr: the lr of the first update (> 0).
        total_steps: updates until ``min_lr`` is reached (int >= 1).
        min_lr: the final lr, in [0, lr]. Default: 0.
    """

    name = "cosine"

    def __init__(self, lr: float, total_steps: int, min_lr: float = 0.0):
        self.lr = _lr("lr", lr)
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.min_lr = check_real("min_lr", min_lr, lo=0, hi=self.lr)

    def _value(self, step):
        progress = min(step, self.total_steps) / self.total_steps
        cosine = (1.0 + math.cos(math.pi * progress)) / 2.0
        return self.min_lr + (self.lr - self.min_lr) * cosine


class Warmup(Schedule):
    """``lr(step) = start_lr + (after(0) - start_lr) * step / warmup_steps`` for
    ``step < warmup_steps``, then ``after(step - warmup_steps)``.

    Linear warmup (Goyal et al., 2017, "Accurate, Large Minibatch SGD") followed by any
    schedule, which starts at its own step 0 when the warmup ends: update
    ``warmup_steps`` uses ``after(0)``. So ``Warmup(CosineDecay(0.1, 900), 100)``
    trains 1000 updates. With the default ``start_lr=0`` the first update has lr 0.

    PyTorch: ``SequentialLR([LinearLR(start_factor=start_lr / after(0),
    total_iters=warmup_steps), <after>], milestones=[warmup_steps])`` stepped after every
    update gives the same sequence (torch needs ``start_lr > 0``). Keras:
    ``CosineDecay(start_lr, decay_steps, warmup_target=lr, warmup_steps=...)`` is
    ``Warmup(CosineDecay(lr, decay_steps), warmup_steps, start_lr)``.

    Args:
        after: the schedule after the warmup, or a float (> 0) for a constant lr.
            A plain callable works too; ``get_config`` then records its repr, which
            :func:`from_config` cannot rebuild.
        warmup_steps: length of the warmup in updates (int >= 0; 0 means no warmup).
        start_lr: the lr of the first update (>= 0). Default: 0.
    """

    name = "warmup"

    def __init__(
        self,
        after: Callable[[int], float] | float,
        warmup_steps: int,
        start_lr: float = 0.0,
    ):
        if isinstance(after, numbers.Real) and not isinstance(after, bool):
            after = Constant(after)
        if not callable(after):
            raise ArgumentTypeError(
                "after must be a schedule (a callable step -> lr) or a float, got "
                f"{type(after).__name__}"
            )
        self.after = after
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0)
        self.start_lr = check_real("start_lr", start_lr, lo=0)

    def _value(self, step):
        if step >= self.warmup_steps:
            return self.after(step - self.warmup_steps)
        target = self.after(0)
        return self.start_lr + (target - self.start_lr) * step / self.warmup_steps

    def _args(self):
        after = self.after
        return {
            "after": after.get_config()
            if hasattr(after, "get_config")
            else repr(after),
            "warmup_steps": self.warmup_steps,
            "start_lr": self.start_lr,
        }


def scale_lr(lr: float, batch_size: int, reference: int = 256) -> float:
    """``lr * batch_size / reference``: the linear scaling rule (Goyal et al., 2017):
    multiply the lr by k when the batch grows k times; pair it with :class:`Warmup`.

    Args:
        lr: the lr tuned for batches of ``reference`` samples (> 0).
        batch_size: the batch size used (int >= 1).
        reference: the batch size ``lr`` was tuned for (int >= 1). Default: 256.

    Returns:
        The scaled lr, a Python float.
    """
    lr = _lr("lr", lr)
    batch_size = check_int("batch_size", batch_size, 1)
    reference = check_int("reference", reference, 1)
    return lr * batch_size / reference


_BY_NAME = {
    cls.name: cls
    for cls in (
        Constant,
        ExponentialDecay,
        StepDecay,
        PolynomialDecay,
        CosineDecay,
        Warmup,
    )
}


def get(name, **kwargs) -> Schedule:
    """Builds a schedule by name (``"constant"``, ``"exponential"``, ``"step"``,
    ``"polynomial"``, ``"cosine"``, ``"warmup"``) from ``kwargs``, the class's
    arguments; a :class:`Schedule` is returned as is.

    Example::

        get("cosine", lr=0.1, total_steps=1000, min_lr=1e-4)
    """
    if isinstance(name, Schedule) and not kwargs:
        return name
    cls = _BY_NAME.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        raise ArgumentError(f"schedule must be one of {sorted(_BY_NAME)}, got {name!r}")
    params = inspect.signature(cls).parameters
    unknown = sorted(set(kwargs) - set(params))
    missing = [p for p, v in params.items() if v.default is v.empty and p not in kwargs]
    if unknown or missing:
        raise ArgumentError(
            f"schedule {cls.name!r} takes arguments {list(params)}; got unknown "
            f"{unknown} and missing {missing}"
        )
    return cls(**kwargs)


def from_config(config: Mapping) -> Schedule:
    """Rebuilds a schedule from ``schedule.get_config()`` (nested schedules too)."""
    if not isinstance(config, Mapping) or "name" not in config:
        raise ArgumentError(
            f"config must be a dict with a 'name' key (from get_config()), got {config!r}"
        )
    kwargs = {k: v for k, v in config.items() if k != "name"}
    after = kwargs.get("after")
    if isinstance(after, Mapping):
        kwargs["after"] = from_config(after)
    elif isinstance(after, str):
        raise ArgumentTypeError(
            f"cannot rebuild {config['name']!r}: its schedule was a plain callable, "
            f"recorded as {after}; use a gpunn.schedules schedule"
        )
    return get(config["name"], **kwargs)
