"""The steps of mixed-precision training that sit around the backward pass.

A model with a :class:`~gpunn.optim.LossScaler` (``compile(loss_scale=...)``; the
default of ``precision="mixed_float16"``) multiplies the loss's gradient by the scale
before backpropagating through its 16-bit layers (:func:`scaled`), so small gradients
do not flush to zero in float16. Before the optimizer step, :func:`unscale_and_check`
divides the float32 gradient arena by the scale (``grads *= float32(1 / scale)``, as
``torch.amp.GradScaler.unscale_``) and checks it with the same reduction as the
finite check: a step whose gradients (or loss, or the layer state it would commit)
hold an infinity or NaN is skipped and the scale backs off; otherwise the step is
applied and the scaler counts it. The loss itself is never scaled, so the logged
losses are the true ones.
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


def unscale_and_check(model, loss) -> bool:
    """Unscales the gradient arena and tells whether the step may be applied. On an
    overflow the scaler backs off (raising NonFiniteError, nothing changed, when the
    scale would fall below 2**-24 or is static) and the step is to be skipped."""
    scaler, arena, backend = model.loss_scaler, model.arena, model.backend
    with overflow_expected(model):
        arena.grads *= arena.dtype.type(scaler.inv_scale())
    ok = backend.step_is_finite(0.0 if loss is None else loss, arena.grads)
    for layer in model.layers:  # the layer state the step would commit
        staged = layer.staged_is_finite()
        ok = ok if staged is None else ok & staged
    if bool(ok):
        return True
    scaler.update(found_inf=True)
    return False
