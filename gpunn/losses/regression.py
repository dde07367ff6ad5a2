"""Point-prediction regression losses over all elements: MSE, MAE and Huber
(PyTorch's ``MSELoss``, ``L1Loss``, ``HuberLoss``), with optional sample weights."""

from __future__ import annotations

from gpunn.checks import check_real
from gpunn.losses.base import Loss, values_like


class _Elementwise(Loss):
    task = "regression"

    def prepare_targets(self, y, n_outputs, dtype):
        return values_like(
            self.name, y, n_outputs, dtype, " to match the model's outputs"
        )


class MeanSquaredError(_Elementwise):
    """``loss = sum_i s_i sum_j (outputs_ij - targets_ij)^2 / (batch k)``: PyTorch's
    ``MSELoss`` (``s``: optional sample weights, 1 by default).

    Shape: outputs and targets ``(batch, k)`` (targets 1-D for ``k = 1``)."""

    name = op = "mse"


class MeanAbsoluteError(_Elementwise):
    """``loss = sum_i s_i sum_j |outputs_ij - targets_ij| / (batch k)``: PyTorch's
    ``L1Loss``; the subgradient at 0 is 0.

    Shape: outputs and targets ``(batch, k)`` (targets 1-D for ``k = 1``)."""

    name = op = "mae"


class Huber(_Elementwise):
    """``loss = sum_i s_i sum_j h(outputs_ij - targets_ij) / (batch k)`` with ``h(d) =
    d^2 / 2`` for ``|d| < delta``, else ``delta (|d| - delta / 2)``: PyTorch's
    ``HuberLoss(delta)`` (Huber, 1964).

    Args:
        delta: the threshold between the quadratic and the linear part, > 0.
            Default: 1.0.

    Shape: outputs and targets ``(batch, k)`` (targets 1-D for ``k = 1``)."""

    name = op = "huber"

    def __init__(self, delta=1.0):
        self.delta = check_real("delta", delta, 0, lo_open=True)

    def op_options(self, backend, dtype):
        return {} if self.delta == 1 else {"delta": self.delta}

    def get_config(self):
        return {"name": self.name, "delta": self.delta}
