"""Adagrad and Adadelta, as ``torch.optim.Adagrad`` / ``torch.optim.Adadelta``."""

from __future__ import annotations

import numpy as np

from gpunn.checks import check_bool, check_real
from gpunn.optim.base import Optimizer


class Adagrad(Optimizer):
    """Adagrad (Duchi, Hazan & Singer 2011), as ``torch.optim.Adagrad``.

    ``g = grad + weight_decay * p``; ``s = s + g^2``;
    ``p = p - clr * g / (sqrt(s) + eps)`` with ``clr = lr / (1 + (t - 1) * lr_decay)``
    at update ``t`` (computed on the host). ``s`` starts at
    ``initial_accumulator_value``.

    Args:
        lr: learning rate (> 0) or a schedule (``lr_decay`` applies on top).
            Default: 1e-2.
        lr_decay: learning-rate decay per update (>= 0). Default: 0.
        weight_decay: L2 penalty added to the gradient (>= 0). Default: 0.
        initial_accumulator_value: starting value of ``s`` (>= 0). Default: 0.
        eps: term added to the denominator (> 0). Default: 1e-10.
        maximize: ascend the objective instead. Default: False.
        clip_norm, clip_value: keyword-only gradient clipping, see
            :class:`~gpunn.optim.Optimizer`. Default: None.
    """

    writes_param_copy = True

    state_names = ("sum",)

    def __init__(
        self,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.lr_decay = check_real("lr_decay", lr_decay, lo=0)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        self.initial_accumulator_value = check_real(
            "initial_accumulator_value", initial_accumulator_value, lo=0
        )
        self.eps = check_real("eps", eps, lo=0, lo_open=True)
        self.maximize = check_bool("maximize", maximize)

    def _init_state(self) -> None:
        if self.initial_accumulator_value != 0:
            self.state["sum"][...] = self.initial_accumulator_value

    def state_stays_finite(self):
        """Whether ``s + g**2`` (``g`` the gradient with its L2 term) stays finite
        in every entry: ``s`` only grows."""
        if self.arena is None:
            return None
        arena, xp = self.arena, self.arena.backend.xp
        g = arena.grads
        if self.weight_decay:
            g = g + self.weight_decay * arena.params
        with np.errstate(over="ignore", invalid="ignore"):
            return xp.isfinite(self.state["sum"] + g * g).all()

    def _update(self, t: int, lr: float) -> None:
        arena = self.arena
        arena.backend.adagrad_update_(
            arena.params,
            arena.grads,
            self.state["sum"],
            clr=lr / (1 + (t - 1) * self.lr_decay),
            eps=self.eps,
            weight_decay=self.weight_decay,
            maximize=self.maximize,
            param_copy=arena.compute,
        )

    def _hyperparameters(self) -> dict:
        return {
            "lr_decay": self.lr_decay,
            "weight_decay": self.weight_decay,
            "initial_accumulator_value": self.initial_accumulator_value,
            "eps": self.eps,
            "maximize": self.maximize,
        }


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012), as ``torch.optim.Adadelta``.

    ``g = grad + weight_decay * p``; ``v = rho * v + (1 - rho) * g^2``;
    ``delta = sqrt(u + eps) / sqrt(v + eps) * g``; ``u = rho * u + (1 - rho) *
    delta^2``; ``p = p - lr * delta``. ``eps`` is inside both square roots, as in the
    paper and PyTorch.

    Args:
        lr: coefficient scaling ``delta`` (> 0) or a schedule. Default: 1.0.
        rho: decay of both running averages, in [0, 1]. Default: 0.9.
        eps: term added inside the square roots (> 0). Default: 1e-6.
        weight_decay: L2 penalty added to the gradient (>= 0). Default: 0.
        maximize: ascend the objective instead. Default: False.
        clip_norm, clip_value: keyword-only gradient clipping, see
            :class:`~gpunn.optim.Optimizer`. Default: None.
    """

    writes_param_copy = True

    state_names = ("square_avg", "acc_delta")

    def __init__(
        self,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.rho = check_real("rho", rho, lo=0, hi=1)
        self.eps = check_real("eps", eps, lo=0, lo_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        self.maximize = check_bool("maximize", maximize)

    def _update(self, t: int, lr: float) -> None:
        arena = self.arena
        arena.backend.adadelta_update_(
            arena.params,
            arena.grads,
            self.state["square_avg"],
            self.state["acc_delta"],
            lr=lr,
            rho=self.rho,
            eps=self.eps,
            weight_decay=self.weight_decay,
            maximize=self.maximize,
            param_copy=arena.compute,
        )

    def _hyperparameters(self) -> dict:
        return {
            "rho": self.rho,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "maximize": self.maximize,
        }
