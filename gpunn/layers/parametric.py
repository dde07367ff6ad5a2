"""Activations with trainable parameters in the arena: ``PReLU`` and ``Swish``.

Their parameter gradients are reductions over the batch done by the backend ops
``backprop_prelu_`` / ``backprop_swish_``, which write into the arena's grad views.
"""

from __future__ import annotations

import numpy as np

from gpunn.arena import ParamSpec
from gpunn.checks import check_bool, check_real
from gpunn.layers.base import Layer


class PReLU(Layer):
    """``x if x > 0 else a * x`` with a learnable slope ``a`` (He et al. 2015,
    "Delving Deep into Rectifiers"), as PyTorch's ``PReLU``. At 0 the input gradient
    uses the slope and the slope gets no gradient, as in PyTorch.

    Args:
        init: initial slope. Default: 0.25.
        per_unit: one slope per input unit (torch ``num_parameters=n``) instead of one
            shared slope (torch's default ``num_parameters=1``). Default: False.
        name: optional layer name.

    Shape: ``(batch, n)`` -> ``(batch, n)``.
    Weights: ``[weight]`` of shape ``(1,)``, or ``(n,)`` with ``per_unit``.
    """

    def __init__(
        self, init: float = 0.25, per_unit: bool = False, name: str | None = None
    ):
        super().__init__(name)
        self.init = check_real("init", init)
        self.per_unit = check_bool("per_unit", per_unit)
        self._x = None

    def build(self, n_in, rng):
        super().build(n_in, rng)
        shape = (n_in,) if self.per_unit else (1,)
        return [ParamSpec("weight", shape, np.full(shape, self.init))]

    def forward(self, x, training: bool = False):
        if training:
            self._x = x
        return self.backend.prelu(x, self.params["weight"])

    def backward(self, dy):
        return self.backend.backprop_prelu_(
            dy,
            self._x,
            self.params["weight"],
            self.grads["weight"],
            need_dx=self.needs_dx,
        )

    def flops_per_sample(self) -> int:
        return self.n_in or 0

    def get_config(self) -> dict:
        return {"init": self.init, "per_unit": self.per_unit, "name": self.name}


class Swish(Layer):
    """``x * sigmoid(beta * x)`` (Ramachandran et al. 2017, "Searching for Activation
    Functions"); ``beta = 1`` is SiLU. With ``trainable=True``, ``beta`` is one
    learnable scalar in the arena (the paper's Swish), else a fixed constant.

    Args:
        beta: the (initial) ``beta``. Default: 1.0.
        trainable: learn ``beta``. Default: False.
        name: optional layer name.

    Shape: ``(batch, n)`` -> ``(batch, n)``.
    Weights: ``[beta]`` of shape ``(1,)`` when trainable, else none.
    """

    def __init__(
        self, beta: float = 1.0, trainable: bool = False, name: str | None = None
    ):
        super().__init__(name)
        self.beta = check_real("beta", beta)
        self.trainable = check_bool("trainable", trainable)
        self._x = None

    def build(self, n_in, rng):
        super().build(n_in, rng)
        if not self.trainable:
            return []
        return [ParamSpec("beta", (1,), np.full(1, self.beta))]

    def _beta(self):
        """The device parameter when trainable, else the Python float."""
        return self.params["beta"] if self.trainable else self.beta

    def forward(self, x, training: bool = False):
        if training:
            self._x = x
        return self.backend.swish(x, self._beta())

    def backward(self, dy):
        return self.backend.backprop_swish_(
            dy, self._x, self._beta(), self.grads.get("beta")
        )

    def flops_per_sample(self) -> int:
        return 4 * (self.n_in or 0)

    def get_config(self) -> dict:
        return {"beta": self.beta, "trainable": self.trainable, "name": self.name}
