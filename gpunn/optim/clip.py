"""Gradient clipping on a model's flat gradient arena, as ``torch.nn.utils``.

Each is one pass over the flat gradient buffer on the device; no value comes back to
the host, so a GPU step never waits. Optimizers apply the same ops inside ``step()``
when built with ``clip_norm`` / ``clip_value``.
"""

from __future__ import annotations

from gpunn.checks import check_real
from gpunn.errors import ArgumentTypeError, NotBuiltError


def clip_grad_norm_(model, max_norm: float):
    """Scales all gradients in place by ``min(1, max_norm / (norm + 1e-6))``, where
    ``norm`` is the global L2 norm over every gradient, as
    ``torch.nn.utils.clip_grad_norm_`` (L2 only).

    Args:
        model: a built model (anything with an ``arena``) or a
            :class:`~gpunn.arena.ParameterArena`.
        max_norm: the largest norm allowed (> 0).

    Returns:
        The norm before clipping, a 0-d device array of the gradients' dtype.
    """
    max_norm = check_real("max_norm", max_norm, lo=0, lo_open=True)
    arena = _arena_of(model)
    return arena.backend.clip_by_norm_(arena.grads, max_norm)


def clip_grad_value_(model, clip_value: float) -> None:
    """Clamps every gradient in place to ``[-clip_value, clip_value]``, as
    ``torch.nn.utils.clip_grad_value_``.

    Args:
        model: a built model (anything with an ``arena``) or a ParameterArena.
        clip_value: the largest magnitude allowed (> 0).
    """
    clip_value = check_real("clip_value", clip_value, lo=0, lo_open=True)
    arena = _arena_of(model)
    arena.backend.clip_by_value_(arena.grads, clip_value)


def _arena_of(model):
    if hasattr(model, "grads") and hasattr(model, "backend"):
        return model
    if not hasattr(model, "arena"):
        raise ArgumentTypeError(
            f"model must be a model with an arena or a ParameterArena, got "
            f"{type(model).__name__}"
        )
    if model.arena is None:
        raise NotBuiltError("model is not built: pass input_dim or call fit first")
    return model.arena
