"""Adam and AdamW, as ``torch.optim.Adam`` / ``torch.optim.AdamW``."""

from __future__ import annotations

import math

from gpunn.checks import check_real
from gpunn.optim.base import Optimizer


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
    """

    decoupled = False

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
    ):
        super().__init__(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            check_real("betas[0]", betas[0], lo=0, hi=1, hi_open=True),
            check_real("betas[1]", betas[1], lo=0, hi=1, hi_open=True),
        )
        self.eps = check_real("eps", eps, lo=0, lo_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        self.amsgrad, self.maximize = bool(amsgrad), bool(maximize)
        self.state_names = ("exp_avg", "exp_avg_sq") + (
            ("max_exp_avg_sq",) if self.amsgrad else ()
        )

    def _update(self, t: int) -> None:
        beta1, beta2 = self.betas
        arena = self.arena
        arena.backend.adam_update_(
            arena.params,
            arena.grads,
            self.state["exp_avg"],
            self.state["exp_avg_sq"],
            self.state.get("max_exp_avg_sq"),
            lr=self.lr,
            beta1=beta1,
            beta2=beta2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            decoupled=self.decoupled,
            maximize=self.maximize,
            step_size=self.lr / (1 - beta1**t),
            bias_correction2_sqrt=math.sqrt(1 - beta2**t),
        )

    def hyperparameters(self) -> dict:
        return {
            "lr": self.lr,
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
    ):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, maximize)
