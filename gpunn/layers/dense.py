"""The fully connected layer."""

from __future__ import annotations

import numpy as np

from gpunn import initializers, regularizers
from gpunn.arena import ParamSpec
from gpunn.backends.ops_fused import FUSABLE
from gpunn.checks import check_bool
from gpunn.errors import ArgumentError
from gpunn.layers import activations
from gpunn.layers.base import Layer


class Dense(Layer):
    """``y = activation(x @ W + b)`` with ``W`` shaped ``(n_in, units)``.

    Args:
        units: output width (> 0).
        activation: optional activation: a name (``Dense(n, activation="relu")`` is
            shorthand for ``Dense(n)`` followed by ``ReLU()``), an
            :class:`~gpunn.layers.Activation` such as ``LeakyReLU(0.2)`` (copied), or
            a config ``{"activation": "leaky_relu", "negative_slope": 0.2}``.
            Default: None.
        use_bias: add the bias ``b`` (shape ``(units,)``). Default: True.
        kernel_init: initializer name or callable for ``W``. Default:
            ``"glorot_uniform"``.
        bias_init: initializer name or callable for ``b``. Default: ``"zeros"``.
        kernel_regularizer: penalty on ``W`` (Keras semantics): ``"l1"``, ``"l2"``,
            ``"l1_l2"``, a :mod:`gpunn.regularizers` instance or config, or None.
            Default: None.
        bias_regularizer: the same for ``b`` (ignored without bias). Default: None.
        name: optional layer name.

    Shape: ``(batch, n_in)`` -> ``(batch, units)``.
    Weights: ``get_weights()`` gives ``[W, b]`` (``[W]`` without bias).
    Mixed precision: the input is cast to the 16-bit compute dtype, the GEMMs take
    the arena's 16-bit copy of ``W`` and ``b`` and accumulate in float32, the output
    is 16-bit, and the gradients of ``W`` and ``b`` reach the float32 arena.
    """

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_init="glorot_uniform",
        bias_init="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        name: str | None = None,
    ):
        super().__init__(name)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ArgumentError(f"units must be a positive int, got {units!r}")
        self.units = units
        self.use_bias = check_bool("use_bias", use_bias)
        self.kernel_init = initializers.get(kernel_init, "kernel_init")
        self.bias_init = initializers.get(bias_init, "bias_init")
        self._init_args = (kernel_init, bias_init)
        self.activation = activations.get(activation)
        self.kernel_regularizer = regularizers.get(
            kernel_regularizer, "kernel_regularizer"
        )
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer")
        self._x = self._saved = None
        self._in_dtype = None

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

    def _split(self, activate: bool):
        """``(fused, options, rest)``: the activation the backend fuses with the GEMM
        and the bias (``"identity"`` when there is none to fuse) with its options,
        and the activation layer left to run after it (softmax), or None."""
        act = self.activation if activate else None
        if act is None or act.activation not in FUSABLE:
            return "identity", {}, act
        return act.activation, act.options, None

    def forward(self, x, training: bool = False, activate: bool = True):
        """``activation(x @ W + b)``; with ``activate=False`` the activation is
        skipped (the model fuses a final softmax/sigmoid into its loss). Pass the same
        ``activate`` to :meth:`backward`. The bias add and a fusable activation run
        as one backend op (``dense_activation``)."""
        fused, options, rest = self._split(activate)
        weights = self.compute_params  # 16-bit copies under mixed precision
        kernel = weights["kernel"]
        in_dtype = x.dtype
        if x.dtype != kernel.dtype:  # mixed precision: the GEMM's 16-bit inputs
            with np.errstate(over="ignore"):  # past the 16-bit range: inf
                x = x.astype(kernel.dtype)
        y, saved = self.backend.dense_activation(
            x, kernel, weights.get("bias"), fused, options
        )
        if training:
            self._x, self._saved, self._in_dtype = x, saved, in_dtype
        return y if rest is None else rest.forward(y, training)

    def backward(self, dy, activate: bool = True):
        """Writes the gradients of ``W`` and ``b`` (data term plus any regularizer's)
        and returns ``dx``; ``activate=False`` as in :meth:`forward`."""
        fused, options, rest = self._split(activate)
        if rest is not None:
            dy = rest.backward(dy)
        kernel = self.compute_params["kernel"]
        if dy.dtype != kernel.dtype:  # e.g. a float32 loss gradient, mixed precision
            dy = dy.astype(kernel.dtype)
        dx = self.backend.backprop_dense_activation_(
            self._x,
            kernel,
            dy,
            self._saved,
            self.grads["kernel"],
            self.grads.get("bias"),
            fused,
            options,
            need_dx=self.needs_dx,
        )
        for key, regularizer in self._regularized():
            regularizer.add_grad_(
                self.backend, self.params[key], self.grads[key], self.grad_scale
            )
        if dx is not None and dx.dtype != self._in_dtype:
            dx = dx.astype(self._in_dtype)
        return dx

    def _regularized(self) -> list:
        pairs = [("kernel", self.kernel_regularizer), ("bias", self.bias_regularizer)]
        return [(k, r) for k, r in pairs if r is not None and k in self.params]

    def penalty(self):
        """The sum of the kernel's and the bias' regularizer penalties as a 0-d device
        array, or None without regularizers."""
        terms = [
            r.penalty(self.backend, self.params[k]) for k, r in self._regularized()
        ]
        if not terms:
            return None
        return sum(terms[1:], terms[0])

    def flops_per_sample(self) -> int:
        flops = 2 * self.n_in * self.units + (self.units if self.use_bias else 0)
        return flops + (self.activation.flops_per_sample() if self.activation else 0)

    def get_config(self) -> dict:
        kernel_init, bias_init = self._init_args
        activation = self.activation
        return {
            "units": self.units,
            "activation": activation.activation_config() if activation else None,
            "use_bias": self.use_bias,
            "kernel_init": kernel_init if isinstance(kernel_init, str) else None,
            "bias_init": bias_init if isinstance(bias_init, str) else None,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "name": self.name,
        }
