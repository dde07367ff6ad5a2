"""Stochastic gradient descent with momentum, as ``torch.optim.SGD``."""

from __future__ import annotations

from gpunn.checks import check_bool, check_real
from gpunn.errors import ArgumentError
from gpunn.optim.base import Optimizer


class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay.

    ``g = grad + weight_decay * p``; with momentum, ``buf = g`` on the first step and
    ``buf = momentum * buf + (1 - dampening) * g`` after, then ``g = g + momentum * buf``
    (Nesterov, Sutskever et al. 2013) or ``g = buf``; finally ``p = p - lr * g``.
    This is PyTorch's formulation (lr multiplies the velocity, not the gradient).

    Args:
        lr: learning rate (> 0). Default: 1e-3, as ``torch.optim.SGD``.
        momentum: momentum factor (>= 0). Default: 0.
        dampening: dampening for momentum (>= 0). Default: 0.
        nesterov: Nesterov momentum; needs momentum > 0 and dampening = 0.
            Default: False.
        weight_decay: L2 penalty added to the gradient (>= 0). Default: 0.
        maximize: ascend the objective instead. Default: False.
        clip_norm, clip_value: keyword-only gradient clipping, see
            :class:`~gpunn.optim.Optimizer`. Default: None.

    ``lr`` may be a schedule (a callable ``step -> lr``), as for every optimizer.
    """

    writes_param_copy = True

    def __init__(
        self,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.momentum = check_real("momentum", momentum, lo=0)
        self.dampening = check_real("dampening", dampening, lo=0)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ArgumentError(
                "nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={self.momentum}, dampening={self.dampening}"
            )
        self.nesterov = check_bool("nesterov", nesterov)
        self.maximize = check_bool("maximize", maximize)
        self.state_names = ("momentum_buffer",) if self.momentum != 0 else ()

    def _update(self, t: int, lr: float) -> None:
        arena = self.arena
        arena.backend.sgd_update_(
            arena.params,
            arena.grads,
            self.state.get("momentum_buffer"),
            lr=lr,
            momentum=self.momentum,
            dampening=self.dampening,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            maximize=self.maximize,
            first_step=t == 1,
            param_copy=arena.compute,
        )

    def _hyperparameters(self) -> dict:
        return {
            "momentum": self.momentum,
            "dampening": self.dampening,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
            "maximize": self.maximize,
        }
