"""Optimizers with ``torch.optim``'s names, defaults and update rules, each one fused
update over the model's flat parameter arena."""

from gpunn.optim.adam import Adam, AdamW
from gpunn.optim.base import Optimizer
from gpunn.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "get"]

_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get(optimizer, **kwargs) -> Optimizer:
    """Returns an optimizer for a name (``"sgd"``, ``"adam"``, ``"adamw"``, built with
    ``kwargs``) or an :class:`Optimizer` instance (returned as is)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _BY_NAME:
        return _BY_NAME[optimizer.lower()](**kwargs)
    raise ValueError(
        f"optimizer must be one of {sorted(_BY_NAME)} or an Optimizer, got {optimizer!r}"
    )
