"""The steps of mixed-precision training that sit around the backward pass.

A model with a :class:`~gpunn.optim.LossScaler` (``compile(loss_scale=...)``; the
default of ``precision="mixed_float16"``) multiplies the loss's gradient by the scale
before backpropagating through its 16-bit layers (:func:`scaled`), so small gradients
do not flush to zero in float16. Before the optimizer step, :func:`unscale_` divides
the float32 gradient arena by the scale (``grads *= float32(1 / scale)``, as
``torch.amp.GradScaler.unscale_``); the step's finite check
(:class:`~gpunn.faults.StepCheck`, :func:`~gpunn.faults.step_verdict`) then skips a
step whose gradients (or loss, or the state it would commit) hold an infinity or NaN
and backs the scale off; otherwise the step is applied and the scaler counts it. The
loss itself is never scaled, so the logged losses are the true ones.
"""

from __future__ import annotations

import contextlib

import numpy as np


def overflow_expected(model):
    """A context in which NumPy does not warn about overflows and the NaNs they
    make: with a loss scaler an overflow is the signal the scaler acts on (the step
    is skipped), not an error."""
    if model.loss_scaler is None:
        return contextlib.nullcontext()
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def loss_scale(model) -> float:
    """The factor the loss gradient carries this step (1 without a scaler); layers
    add their own gradients (penalties) scaled alike."""
    scaler = model.loss_scaler
    scale = 1.0 if scaler is None else scaler.scale
    for layer in model.layers:
        layer.grad_scale = scale
    return scale


def scaled(model, doutputs):
    """The loss gradient times the loss scale (unchanged without a scaler)."""
    scale = loss_scale(model)
    return doutputs if scale == 1 else doutputs * scale


def unscale_(model) -> None:
    """Divides the gradient arena by the loss scale in place (``grads *=
    float32(1 / scale)``, as ``GradScaler.unscale_``); the step's finite check
    (:class:`~gpunn.faults.StepCheck`) then decides, skipping an overflowing step
    and backing the scale off."""
    arena = model.arena
    with overflow_expected(model):
        arena.grads *= arena.dtype.type(model.loss_scaler.inv_scale())
