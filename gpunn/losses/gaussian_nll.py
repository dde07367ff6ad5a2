"""Heteroscedastic regression: the network predicts a mean and a log-variance per
target, trained by the Gaussian negative log-likelihood (Nix and Weigend, 1994;
PyTorch's ``GaussianNLLLoss`` with ``var = exp(log_var)``).

The model's outputs ``(n, 2k)`` are ``[mean (k) | log_var (k)]`` for targets ``(n, k)``;
:func:`predictive` reads the predicted distribution back from ``model.predict``.
"""

from __future__ import annotations

import numpy as np

from gpunn.checks import check_real
from gpunn.errors import ArgumentError, ArgumentTypeError, InvalidInputError
from gpunn.losses.base import Loss, values_like

DEFAULT_EPS = 1e-6


class GaussianNLL(Loss):
    """``loss = sum_i s_i sum_j 0.5 (v_ij + (mu_ij - y_ij)^2 / exp(v_ij)) / (batch k)``
    (+ ``0.5 log(2 pi)`` when ``full``) with ``v = max(log_var, log(eps))``: PyTorch's
    ``GaussianNLLLoss(full=full, eps=eps)`` for ``var = exp(log_var)`` (``s``:
    optional sample weights, 1 by default).

    Predicting the log-variance keeps the variance positive without a constraint;
    the ``eps`` floor keeps ``exp(-v)`` finite for very negative log-variances (the
    gradient at the floor passes straight through, as PyTorch's clamp does), and
    ``exp(-v)`` underflows harmlessly to 0 for very large ones.

    Args:
        full: add the constant ``0.5 log(2 pi)`` (the exact negative
            log-likelihood). Default: False.
        eps: the variance floor, > 0. Default: 1e-6.

    Shape: outputs ``(batch, 2k)`` = ``[mean | log_var]``, targets ``(batch, k)``
    (1-D for ``k = 1``). Regression metrics compare the mean with the targets.
    """

    name = op = "gaussian_nll"
    task = "regression"

    def __init__(self, full=False, eps=DEFAULT_EPS):
        if not isinstance(full, (bool, np.bool_)):
            raise ArgumentTypeError(f"full must be True or False, got {full!r}")
        self.full = bool(full)
        self.eps = check_real("eps", eps, 0, lo_open=True)

    def op_options(self, backend, dtype):
        options = {"full": True} if self.full else {}
        if self.eps != DEFAULT_EPS:
            options["eps"] = self.eps
        return options

    def prepare_targets(self, y, n_outputs, dtype):
        if n_outputs % 2:
            raise InvalidInputError(
                f"{self.name} needs 2 outputs per target ([mean | log_var]), got a "
                f"model with {n_outputs} outputs"
            )
        note = f" for a model with {n_outputs} outputs [mean | log_var]"
        return values_like(self.name, y, n_outputs // 2, dtype, note)

    def point_estimate(self, backend, outputs):
        """The predicted mean ``outputs[:, :k]``."""
        return outputs[:, : outputs.shape[1] // 2]

    def predictive(self, outputs):
        """``(mean, variance)`` from ``model.predict`` outputs: see
        :func:`predictive`."""
        return predictive(outputs, self.eps)

    def get_config(self):
        return {"name": self.name, "full": self.full, "eps": self.eps}


def predictive(outputs, eps: float = DEFAULT_EPS):
    """The predicted Gaussian per target from host outputs ``(n, 2k)``.

    Returns: ``(mean, variance)``, float64 arrays ``(n, k)``; ``variance =
    max(exp(log_var), eps)``, the variance the loss used.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2 or outputs.shape[1] % 2:
        raise ArgumentError(
            f"outputs must have shape (n, 2k) = [mean | log_var], got shape "
            f"{outputs.shape}"
        )
    k = outputs.shape[1] // 2
    with np.errstate(over="ignore"):
        variance = np.maximum(np.exp(outputs[:, k:]), eps)
    return outputs[:, :k].copy(), variance
