"""Optimizers with ``torch.optim``'s names, defaults and update rules, each one fused
update over the model's flat parameter arena, plus the large-batch optimizers LARS and
LAMB, gradient clipping, and loss scaling for float16 training."""

from gpunn.errors import ArgumentError
from gpunn.optim.adagrad import Adadelta, Adagrad
from gpunn.optim.adam import Adam, AdamW
from gpunn.optim.adam_variants import Adamax, NAdam
from gpunn.optim.base import Optimizer
from gpunn.optim.clip import clip_grad_norm_, clip_grad_value_
from gpunn.optim.large_batch import LAMB, LARS
from gpunn.optim.loss_scaler import LossScaler, StaticLossScaler
from gpunn.optim.rmsprop import RMSprop
from gpunn.optim.sgd import SGD

__all__ = [
    "LAMB",
    "LARS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "LossScaler",
    "NAdam",
    "Optimizer",
    "RMSprop",
    "StaticLossScaler",
    "clip_grad_norm_",
    "clip_grad_value_",
    "get",
    "names",
]

_BY_NAME = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "adadelta": Adadelta,
    "adamax": Adamax,
    "nadam": NAdam,
    "lars": LARS,
    "lamb": LAMB,
}


def names() -> list[str]:
    """The optimizer names :func:`get` accepts."""
    return sorted(_BY_NAME)


def get(optimizer, **kwargs) -> Optimizer:
    """Returns an optimizer for a name (one of ``"sgd"``, ``"adam"``, ``"adamw"``,
    ``"rmsprop"``, ``"adagrad"``, ``"adadelta"``, ``"adamax"``, ``"nadam"``,
    ``"lars"``, ``"lamb"``; case-insensitive), built with ``kwargs``, or an
    :class:`Optimizer` instance (returned as is)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _BY_NAME:
        return _BY_NAME[optimizer.lower()](**kwargs)
    raise ArgumentError(
        f"optimizer must be one of {sorted(_BY_NAME)} or an Optimizer, got {optimizer!r}"
    )
