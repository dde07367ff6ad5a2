"""Adam and AdamW, as ``torch.optim.Adam`` / ``torch.optim.AdamW``."""

from __future__ import annotations

import math

from gpunn.checks import check_bool, check_real
from gpunn.optim.base import Optimizer, check_betas


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), with PyTorch's placement of ``eps``.

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``:
    ``eps`` is added after the bias-corrected square root, as in ``torch.optim.Adam``
    (not inside it, as in some other libraries). ``weight_decay`` adds
    ``weight_decay * p`` to the gradient (L2); for decoupled decay use :class:`AdamW`.

    Args:
        lr: learning rate (> 0). Default: 1e-3.
        betas: ``(b1, b2)``, each in [0, 1). Default: (0.9, 0.999).
        eps: term added to the denominator (> 0). Default: 1e-8.
        weight_decay: L2 penalty (>= 0). Default: 0.
        amsgrad: use the running maximum of ``v`` (Reddi et al. 2018). Default: False.
        maximize: ascend the objective instead. Default: False.
        clip_norm, clip_value: keyword-only gradient clipping, see
            :class:`~gpunn.optim.Optimizer`. Default: None.
    """

    writes_param_copy = True

    decoupled = False

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.betas = check_betas(betas)
        self.eps = check_real("eps", eps, lo=0, lo_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        self.amsgrad = check_bool("amsgrad", amsgrad)
        self.maximize = check_bool("maximize", maximize)
        self.state_names = ("exp_avg", "exp_avg_sq") + (
            ("max_exp_avg_sq",) if self.amsgrad else ()
        )

    def _update(self, t: int, lr: float) -> None:
        beta1, beta2 = self.betas
        arena = self.arena
        arena.backend.adam_update_(
            arena.params,
            arena.grads,
            self.state["exp_avg"],
            self.state["exp_avg_sq"],
            self.state.get("max_exp_avg_sq"),
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            decoupled=self.decoupled,
            maximize=self.maximize,
            step_size=lr / (1 - beta1**t),
            bias_correction2_sqrt=math.sqrt(1 - beta2**t),
            param_copy=arena.compute,
        )

    def _hyperparameters(self) -> dict:
        return {
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
            "maximize": self.maximize,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as
    ``torch.optim.AdamW``: ``p = p * (1 - lr * weight_decay)`` before the Adam step,
    instead of adding ``weight_decay * p`` to the gradient.

    Args: as :class:`Adam`, except ``weight_decay`` defaults to 1e-2.
    """

    decoupled = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize,
            clip_norm=clip_norm,
            clip_value=clip_value,
        )
