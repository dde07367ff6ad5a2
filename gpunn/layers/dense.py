"""The fully connected layer."""

from __future__ import annotations

from gpunn import initializers
from gpunn.arena import ParamSpec
from gpunn.layers.activations import Activation
from gpunn.layers.base import Layer


class Dense(Layer):
    """``y = activation(x @ W + b)`` with ``W`` shaped ``(n_in, units)``.

    Args:
        units: output width (> 0).
        activation: optional activation name; ``Dense(n, activation="relu")`` is
            shorthand for ``Dense(n)`` followed by ``ReLU()``. Default: None.
        use_bias: add the bias ``b`` (shape ``(units,)``). Default: True.
        kernel_init: initializer name or callable for ``W``. Default:
            ``"glorot_uniform"``.
        bias_init: initializer name or callable for ``b``. Default: ``"zeros"``.
        name: optional layer name.

    Shape: ``(batch, n_in)`` -> ``(batch, units)``.
    Weights: ``get_weights()`` gives ``[W, b]`` (``[W]`` without bias).
    """

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_init="glorot_uniform",
        bias_init="zeros",
        name: str | None = None,
    ):
        super().__init__(name)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive int, got {units!r}")
        self.units = units
        self.use_bias = bool(use_bias)
        self.kernel_init = initializers.get(kernel_init, "kernel_init")
        self.bias_init = initializers.get(bias_init, "bias_init")
        self._init_args = (kernel_init, bias_init)
        self.activation = Activation(activation) if activation is not None else None
        self._x = None

    def output_dim(self, n_in: int) -> int:
        return self.units

    def build(self, n_in, rng):
        super().build(n_in, rng)
        fans = {"fan_in": n_in, "fan_out": self.units}
        specs = [
            ParamSpec(
                "kernel",
                (n_in, self.units),
                self.kernel_init((n_in, self.units), rng, **fans),
            )
        ]
        if self.use_bias:
            specs.append(
                ParamSpec(
                    "bias", (self.units,), self.bias_init((self.units,), rng, **fans)
                )
            )
        if self.activation is not None:
            self.activation.build(self.units, rng)
        return specs

    def bind(self, backend, params, grads):
        super().bind(backend, params, grads)
        if self.activation is not None:
            self.activation.bind(backend, {}, {})

    def forward(self, x, training: bool = False):
        if training:
            self._x = x
        y = self.backend.dense_forward(
            x, self.params["kernel"], self.params.get("bias")
        )
        return y if self.activation is None else self.activation.forward(y, training)

    def backward(self, dy):
        if self.activation is not None:
            dy = self.activation.backward(dy)
        return self.backend.dense_backward_(
            self._x,
            self.params["kernel"],
            dy,
            self.grads["kernel"],
            self.grads.get("bias"),
            need_dx=self.needs_dx,
        )

    def flops_per_sample(self) -> int:
        flops = 2 * self.n_in * self.units + (self.units if self.use_bias else 0)
        return flops + (self.activation.flops_per_sample() if self.activation else 0)

    def get_config(self) -> dict:
        kernel_init, bias_init = self._init_args
        return {
            "units": self.units,
            "activation": self.activation.activation if self.activation else None,
            "use_bias": self.use_bias,
            "kernel_init": kernel_init if isinstance(kernel_init, str) else None,
            "bias_init": bias_init if isinstance(bias_init, str) else None,
            "name": self.name,
        }
