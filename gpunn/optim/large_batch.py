"""Large-batch optimizers with a layer-wise trust ratio: LARS and LAMB.

The ratio is computed per parameter tensor of the arena, for all tensors at once: the
layout (each tensor's start offset, and a segment-id array saying which tensor each
flat element belongs to, alignment padding counted with the tensor before it: it is
zero in params and gradients) is built once at bind; the backend sums squares per
tensor in one segmented reduction and gathers the ratio back per element. No
per-tensor loop, no host sync.
"""

from __future__ import annotations

import numpy as np

from gpunn.checks import check_bool, check_real
from gpunn.optim.base import Optimizer, check_betas


class _TrustRatio(Optimizer):
    """Shared part: the arena's tensor layout and the per-tensor ``adapt`` mask."""

    def _init_state(self) -> None:
        self._layout = segment_layout(self.arena, self.exclude_1d)


def segment_layout(arena, exclude_1d: bool = False):
    """``(segment_ids, starts, adapt)`` of an arena's non-empty tensors, on its backend:
    ``segment_ids`` ``(size,)`` maps each flat element to its tensor's index (padding to
    the tensor before it); ``starts`` ``(n_tensors,)`` are their offsets; ``adapt``
    ``(n_tensors,)`` of the arena's dtype is 0 for tensors with ``ndim <= 1`` when
    ``exclude_1d``, else 1 (None when all are 1). Empty tensors have no elements and
    get no segment."""
    slots = [s for s in arena.slots if s.size > 0]
    starts = [s.offset for s in slots]
    sizes = np.diff(starts + [arena.size])
    ids = np.repeat(np.arange(len(slots), dtype=np.intp), sizes)
    adapt = [0.0 if exclude_1d and len(s.shape) <= 1 else 1.0 for s in slots]
    backend = arena.backend
    ids, starts = backend.asarray(ids), backend.asarray(np.array(starts, np.intp))
    if all(adapt):
        return ids, starts, None
    return ids, starts, backend.asarray(np.array(adapt, dtype=arena.dtype))


class LARS(_TrustRatio):
    """LARS: SGD with momentum and a layer-wise trust ratio (You, Gitman & Ginsburg
    2017, "Large Batch Training of Convolutional Networks", Algorithm 1).

    For each parameter tensor ``w`` with gradient ``g``:
    ``ratio = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w|| + eps)``, or 1
    when ``||w||`` or ``||g||`` is 0; ``d = ratio * (g + weight_decay * w)``; then
    ``torch.optim.SGD``'s momentum: ``buf = d`` at the first step, else
    ``buf = momentum * buf + d``; ``w = w - lr * buf``.

    Conventions follow NVIDIA Apex's ``LARC`` (``clip=False``) and timm's ``Lars``
    with ``always_adapt=True``: the ratio multiplies the decayed gradient and ``lr`` the
    momentum buffer (the paper multiplies by the global lr before accumulating the
    momentum: the same for a constant lr), and ``eps`` guards the division. ``lr``
    defaults to 1.0 as in timm: without momentum a tensor then moves by about
    ``trust_coefficient * ||w||`` per step.

    Args:
        lr: global learning rate (> 0) or a schedule. Default: 1.0.
        momentum: momentum factor (>= 0). Default: 0.9.
        weight_decay: L2 weight decay ``beta`` (>= 0). Default: 0.
        trust_coefficient: ``eta`` (> 0). Default: 1e-3.
        eps: term added to the ratio's denominator (>= 0). Default: 1e-8.
        exclude_1d: leave tensors with ``ndim <= 1`` (biases, normalization
            parameters) without trust ratio and weight decay (plain SGD momentum).
            Default: False.
        maximize: ascend the objective instead. Default: False.
        clip_norm, clip_value: keyword-only gradient clipping, see
            :class:`~gpunn.optim.Optimizer`. Default: None.
    """

    writes_param_copy = True

    def __init__(
        self,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-8,
        exclude_1d: bool = False,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.momentum = check_real("momentum", momentum, lo=0)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        self.trust_coefficient = check_real(
            "trust_coefficient", trust_coefficient, lo=0, lo_open=True
        )
        self.eps = check_real("eps", eps, lo=0)
        self.exclude_1d = check_bool("exclude_1d", exclude_1d)
        self.maximize = check_bool("maximize", maximize)
        self.state_names = ("momentum_buffer",) if self.momentum != 0 else ()

    def _update(self, t: int, lr: float) -> None:
        arena = self.arena
        arena.backend.lars_update_(
            arena.params,
            arena.grads,
            self.state.get("momentum_buffer"),
            *self._layout,
            lr=lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            trust_coefficient=self.trust_coefficient,
            eps=self.eps,
            maximize=self.maximize,
            first_step=t == 1,
            param_copy=arena.compute,
        )

    def _hyperparameters(self) -> dict:
        return {
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "trust_coefficient": self.trust_coefficient,
            "eps": self.eps,
            "exclude_1d": self.exclude_1d,
            "maximize": self.maximize,
        }


class LAMB(_TrustRatio):
    """LAMB: Adam moments with a layer-wise trust ratio (You et al. 2019, "Large Batch
    Optimization for Deep Learning: Training BERT in 76 minutes", Algorithm 2).

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``; per tensor ``w``:
    ``r = m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + weight_decay * w``;
    ``ratio = ||w|| / ||r||`` (1 when either is 0); ``w = w - lr * ratio * r``.

    Conventions follow NVIDIA Apex's ``FusedLAMB`` (and its defaults): bias
    correction on, decoupled weight decay inside ``r``, the paper's scaling function
    ``phi`` the identity (no clamp of ``||w||``), ``eps`` outside the square root.
    Apex's built-in global-norm clipping is the ``clip_norm`` argument here.

    Args:
        lr: learning rate (> 0) or a schedule. Default: 1e-3.
        betas: ``(b1, b2)``, each in [0, 1). Default: (0.9, 0.999).
        eps: term added to the denominator (> 0). Default: 1e-6.
        weight_decay: decoupled weight decay (>= 0). Default: 0.01.
        exclude_1d: leave tensors with ``ndim <= 1`` without trust ratio and weight
            decay (their step is ``lr * m_hat / (sqrt(v_hat) + eps)``). Default: False.
        maximize: ascend the objective instead. Default: False.
        clip_norm, clip_value: keyword-only gradient clipping, see
            :class:`~gpunn.optim.Optimizer`. Default: None.
    """

    writes_param_copy = True

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        exclude_1d: bool = False,
        maximize: bool = False,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.betas = check_betas(betas)
        self.eps = check_real("eps", eps, lo=0, lo_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, lo=0)
        self.exclude_1d = check_bool("exclude_1d", exclude_1d)
        self.maximize = check_bool("maximize", maximize)

    def _update(self, t: int, lr: float) -> None:
        beta1, beta2 = self.betas
        arena = self.arena
        arena.backend.lamb_update_(
            arena.params,
            arena.grads,
            self.state["exp_avg"],
            self.state["exp_avg_sq"],
            *self._layout,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            maximize=self.maximize,
            bias_correction1=1 - beta1**t,
            bias_correction2=1 - beta2**t,
            param_copy=arena.compute,
        )

    def _hyperparameters(self) -> dict:
        return {
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "exclude_1d": self.exclude_1d,
            "maximize": self.maximize,
        }
