"""RMSprop, as ``torch.optim.RMSprop``."""

from __future__ import annotations

from gpunn.checks import check_bool, check_real
from gpunn.optim.base import Optimizer


class RMSprop(Optimizer):
    """RMSprop (Hinton, lecture 6e of "Neural Networks for Machine Learning", 2012),
    with PyTorch's placement of ``eps`` and optional centering (Graves 2013) and
    momentum.

    ``g = grad + weight_decay * p``; ``v = alpha * v + (1 - alpha) * g^2``; centered:
    ``a = alpha * a + (1 - alpha) * g`` and ``d = sqrt(v - a^2) + eps``, else
    ``d = sqrt(v) + eps``; with momentum ``buf = momentum * buf + g / d`` (zeros at
    first) and ``p = p - lr * buf``, else ``p = p - lr * g / d``. ``eps`` is added
    outside the square root, as in ``torch.optim.RMSprop`` (Keras adds it inside).

    Args:
        lr: learning rate (> 0) or a schedule. Default: 1e-2.
        alpha: smoothing constant of the squared-gradient average, in [0, 1).
            Default: 0.99.
        eps: term added to the denominator (> 0). Default: 1e-8.
        weight_decay: L2 penalty added to the gradient (>= 0). Default: 0.
        momentum: momentum factor (>= 0). Default: 0.
        centered: divide by the estimated variance instead of the uncentered second
            moment. Default: False.
        maximize: ascend the objective instead. Default: False.
        clip_norm, clip_value: keyword-only gradient clipping, see
            :class:`~gpunn.optim.Optimizer`. Default: None.
    """

    writes_param_copy = True

    def __init__(
        self,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.alpha = check_real("alpha", alpha, lo=0, hi=1, hi_open=True)
        self.eps = check_real("eps", eps, lo=0, lo_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        self.momentum = check_real("momentum", momentum, lo=0)
        self.centered = check_bool("centered", centered)
        self.maximize = check_bool("maximize", maximize)
        self.state_names = (
            ("square_avg",)
            + (("grad_avg",) if self.centered else ())
            + (("momentum_buffer",) if self.momentum > 0 else ())
        )

    def _update(self, t: int, lr: float) -> None:
        arena, state = self.arena, self.state
        arena.backend.rmsprop_update_(
            arena.params,
            arena.grads,
            state["square_avg"],
            state.get("grad_avg"),
            state.get("momentum_buffer"),
            lr=lr,
            alpha=self.alpha,
            eps=self.eps,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
            centered=self.centered,
            maximize=self.maximize,
            param_copy=arena.compute,
        )

    def _hyperparameters(self) -> dict:
        return {
            "alpha": self.alpha,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "centered": self.centered,
            "maximize": self.maximize,
        }
