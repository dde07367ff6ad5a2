"""Adamax and NAdam, as ``torch.optim.Adamax`` / ``torch.optim.NAdam``."""

from __future__ import annotations

from gpunn.checks import check_bool, check_real
from gpunn.optim.base import Optimizer, check_betas


class Adamax(Optimizer):
    """Adamax, the infinity-norm variant of Adam (Kingma & Ba 2015, section 7.1), as
    ``torch.optim.Adamax``.

    ``g = grad + weight_decay * p``; ``m = b1 m + (1 - b1) g``;
    ``u = max(b2 u, |g| + eps)``; ``p = p - lr / (1 - b1^t) * m / u``. ``eps`` is
    added to ``|g|`` inside the maximum, as in PyTorch.

    Args:
        lr: learning rate (> 0) or a schedule. Default: 2e-3.
        betas: ``(b1, b2)``, each in [0, 1). Default: (0.9, 0.999).
        eps: term added to ``|g|`` (> 0). Default: 1e-8.
        weight_decay: L2 penalty added to the gradient (>= 0). Default: 0.
        maximize: ascend the objective instead. Default: False.
        clip_norm, clip_value: keyword-only gradient clipping, see
            :class:`~gpunn.optim.Optimizer`. Default: None.
    """

    writes_param_copy = True

    state_names = ("exp_avg", "exp_inf")

    def __init__(
        self,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.betas = check_betas(betas)
        self.eps = check_real("eps", eps, lo=0, lo_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        self.maximize = check_bool("maximize", maximize)

    def _update(self, t: int, lr: float) -> None:
        beta1, beta2 = self.betas
        arena = self.arena
        arena.backend.adamax_update_(
            arena.params,
            arena.grads,
            self.state["exp_avg"],
            self.state["exp_inf"],
            beta1=beta1,
            beta2=beta2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            maximize=self.maximize,
            clr=lr / (1 - beta1**t),
            param_copy=arena.compute,
        )

    def _hyperparameters(self) -> dict:
        return {
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "maximize": self.maximize,
        }


class NAdam(Optimizer):
    """Adam with Nesterov momentum (Dozat 2016), as ``torch.optim.NAdam``.

    With the momentum schedule ``mu_t = b1 (1 - 0.5 * 0.96^(t * momentum_decay))``
    and ``P_t = mu_1 ... mu_t`` (``mu_product``, kept on the host):
    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``d = sqrt(v / (1 - b2^t)) + eps``;
    ``p = p - lr (1 - mu_t) / (1 - P_t) * g / d - lr mu_{t+1} / (1 - P_t mu_{t+1})
    * m / d``. Weight decay adds ``weight_decay * p`` to ``g``, or with
    ``decoupled_weight_decay`` (NAdamW) multiplies ``p`` by ``1 - lr * weight_decay``
    first.

    ``mu_product`` is a Python float (float64); PyTorch keeps it in its default dtype
    (float32 unless ``torch.set_default_dtype(torch.float64)``), so float64 results
    agree with PyTorch run in float64 default dtype. It is part of :meth:`host_state`.

    Args:
        lr: learning rate (> 0) or a schedule. Default: 2e-3.
        betas: ``(b1, b2)``, each in [0, 1). Default: (0.9, 0.999).
        eps: term added to the denominator (> 0). Default: 1e-8.
        weight_decay: weight decay (>= 0). Default: 0.
        momentum_decay: ``psi`` of the momentum schedule (>= 0). Default: 4e-3.
        decoupled_weight_decay: decay the weights directly (AdamW-style).
            Default: False.
        maximize: ascend the objective instead. Default: False.
        clip_norm, clip_value: keyword-only gradient clipping, see
            :class:`~gpunn.optim.Optimizer`. Default: None.
    """

    writes_param_copy = True

    state_names = ("exp_avg", "exp_avg_sq")
    host_scalars = ("mu_product",)

    def __init__(
        self,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.betas = check_betas(betas)
        self.eps = check_real("eps", eps, lo=0, lo_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        self.momentum_decay = check_real("momentum_decay", momentum_decay, lo=0)
        self.decoupled_weight_decay = check_bool(
            "decoupled_weight_decay", decoupled_weight_decay
        )
        self.maximize = check_bool("maximize", maximize)
        self.mu_product = 1.0

    def _init_state(self) -> None:
        self.mu_product = 1.0

    def _mu(self, t: int) -> float:
        return self.betas[0] * (1.0 - 0.5 * (0.96 ** (t * self.momentum_decay)))

    def _update(self, t: int, lr: float) -> None:
        beta1, beta2 = self.betas
        mu, mu_next = self._mu(t), self._mu(t + 1)
        mu_product = self.mu_product * mu
        arena = self.arena
        arena.backend.nadam_update_(
            arena.params,
            arena.grads,
            self.state["exp_avg"],
            self.state["exp_avg_sq"],
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            decoupled=self.decoupled_weight_decay,
            maximize=self.maximize,
            bias_correction2=1 - beta2**t,
            grad_coef=-lr * (1.0 - mu) / (1.0 - mu_product),
            avg_coef=(-lr * mu_next) / (1.0 - mu_product * mu_next),
            param_copy=arena.compute,
        )
        self.mu_product = mu_product  # only once the update went through

    def _hyperparameters(self) -> dict:
        return {
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum_decay": self.momentum_decay,
            "decoupled_weight_decay": self.decoupled_weight_decay,
            "maximize": self.maximize,
        }
