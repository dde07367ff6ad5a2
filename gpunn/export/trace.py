"""A model's inference graph, traced from gpunn's own reference ops.

Each layer's eval-mode ``forward`` calls one or two backend ops (``dense_forward``, an
activation, ``batch_norm_eval``, ``standardize``, ...). :class:`Tracer` is that backend
for symbolic tensors: it runs the reference ops of
:class:`~gpunn.backends.ops_layers.LayerOps` unchanged on
:class:`~gpunn.export.graph.Sym` tensors, so the graph computes what ``predict``
computes, and overrides only the ops that one ONNX operator computes the same way
(``Gemm``, ``Relu``, ``Sigmoid``, ``Softmax``, ``PRelu``; in float32 and float16 also
``LeakyRelu``, ``Elu`` and ``Erf``, which in float64 stay traced: ONNX float attributes
are float32 and onnxruntime has no float64 ``Elu`` or ``Erf``).

Layers, by exact type (a subclass may compute something else, so it is refused):

- ``Dense``: ``Gemm`` (weights ``(n_in, units)``, bias), then its activation;
- activations: the ops above, with their options;
- ``Dropout``, ``GaussianNoise``: nothing (the identity in eval mode);
- ``BatchNorm``: ``(x - running_mean) * scale + beta`` with ``scale = gamma /
  sqrt(running_var + eps)`` computed at export as ``predict`` computes it;
- ``PReLU``: ``PRelu`` with the learned slope(s); ``Swish``: ``x * Sigmoid(beta * x)``;
- ``Standardize``: ``(x - mean) * (1 / scale)``; ``Whiten``: ``Gemm`` with the
  components and the shift ``-mean @ W``.
"""

from __future__ import annotations

import numpy as np

from gpunn.backends.ops_layers import LayerOps
from gpunn.errors import GpunnError, NotBuiltError
from gpunn.export.graph import Graph, Sym, SymXp
from gpunn.layers import (
    ELU,
    GELU,
    Activation,
    BatchNorm,
    Dense,
    Dropout,
    GaussianNoise,
    Identity,
    LeakyReLU,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Standardize,
    Swish,
    Tanh,
    Whiten,
)

INPUT, OUTPUT = "input", "output"
# activation name -> the backend op its layer runs (gpunn.layers.activations)
ACTIVATION_OPS = {
    "identity": "identity",
    "linear": "identity",
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "elu": "elu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "softmax": "softmax",
}


class ExportError(GpunnError, ValueError):
    """A model the exporter cannot write: an unsupported layer or activation (named
    in the message) or export setting."""


class Tracer(LayerOps):
    """The reference layer ops on :class:`~gpunn.export.graph.Sym` tensors, with
    native ONNX operators where one computes the same function.

    Args:
        graph: the :class:`~gpunn.export.graph.Graph` the ops append to.
    """

    xp = SymXp

    def __init__(self, graph: Graph):
        self.graph = graph
        # LeakyRelu, Elu, Erf natively unless float64 (float attributes are float32)
        self.native = graph.dtype != np.float64

    def dense_forward(self, x, w, b=None):
        """``Gemm``: ``x @ w + b``."""
        return self.graph.op("Gemm", x, w, *(() if b is None else (b,)))

    def relu(self, x):
        return self.graph.op("Relu", x)

    def sigmoid(self, x):
        return self.graph.op("Sigmoid", x)

    def prelu(self, x, weight):
        return self.graph.op("PRelu", x, weight)

    def softmax(self, x, temperature=1.0):
        """``Softmax(x / temperature)`` over the features."""
        if temperature != 1.0:
            x = x / temperature
        return self.graph.op("Softmax", x, axis=1)

    def leaky_relu(self, x, negative_slope=0.01):
        if not self.native:
            return super().leaky_relu(x, negative_slope)
        return self.graph.op("LeakyRelu", x, alpha=float(negative_slope))

    def elu(self, x, alpha=1.0):
        if not self.native:
            return super().elu(x, alpha)
        return self.graph.op("Elu", x, alpha=float(alpha))

    def erf(self, x):
        """``Erf`` in float32 and float16; in float64 gpunn's own rational
        approximation."""
        return self.graph.op("Erf", x) if self.native else super().erf(x)


def trace_model(model, dtype) -> Graph:
    """The inference graph of a built model, in ``dtype``, from the input
    :data:`INPUT` ``(batch, n_in)`` to the output :data:`OUTPUT`.

    Raises:
        ExportError: a layer or activation that cannot be exported, by name.
        NotBuiltError: a Standardize or Whiten layer not adapted yet.
    """
    graph = Graph(dtype)
    ops = Tracer(graph)
    x = graph.input(INPUT)
    for layer in model.layers:
        convert = _converter(layer)
        params = {
            key: model.backend.to_numpy(value).astype(graph.dtype)
            for key, value in layer.params.items()
        }
        with graph.scope(layer.name):
            x = convert(ops, layer, x, params)
    graph.output(x, OUTPUT)
    return graph


def final_activation(model) -> str:
    """The name of the activation that makes the model's outputs (``"softmax"``:
    ``predict`` and the graph return probabilities), or ``"none"``."""
    for layer in reversed(model.layers):
        if type(layer) in (Dropout, GaussianNoise):
            continue
        if isinstance(layer, Dense):
            layer = layer.activation
        if isinstance(layer, Activation):
            return layer.activation
        return type(layer).__name__.lower() if type(layer) in (PReLU, Swish) else "none"
    return "none"


def _converter(layer):
    convert = _CONVERTERS.get(type(layer))
    if convert is None:
        supported = ", ".join(sorted(cls.__name__ for cls in _CONVERTERS))
        raise ExportError(
            f"cannot export layer {layer.name!r} of type {type(layer).__name__} to "
            f"ONNX: only these gpunn layers are exported: {supported} (a subclass "
            "may compute something else in forward)"
        )
    return convert


def _activation(ops: Tracer, layer: Activation, x: Sym, layer_name: str) -> Sym:
    op = ACTIVATION_OPS.get(layer.activation)
    if op is None:
        raise ExportError(
            f"cannot export activation {layer.activation!r} of layer {layer_name!r} "
            f"to ONNX: exported activations are {sorted(ACTIVATION_OPS)}"
        )
    return getattr(ops, op)(x, **layer.options)


def _dense(ops, layer, x, params):
    z = ops.dense_forward(x, params["kernel"], params.get("bias"))
    if layer.activation is None:
        return z
    return _activation(ops, layer.activation, z, layer.name)


def _batch_norm(ops, layer, x, params):
    stats = {k: v.astype(ops.graph.dtype) for k, v in layer.get_state().items()}
    return ops.batch_norm_eval(
        x,
        params.get("gamma"),
        params.get("beta"),
        stats["running_mean"],
        stats["running_var"],
        layer.eps,
    )


def _fitted(layer, dtype) -> dict:
    """The statistics a Standardize or Whiten forward uses, in ``dtype``."""
    if not layer.adapted:
        raise NotBuiltError(
            f"layer {layer.name!r} ({type(layer).__name__}) has no statistics yet: "
            "call layer.adapt(X) (or model.adapt(X)) with training data before "
            "exporting"
        )
    # the host values the layer copies to the device (float64, cast like predict)
    return {k: np.asarray(v, dtype) for k, v in layer._device_values().items()}


def _standardize(ops, layer, x, params):
    values = _fitted(layer, ops.graph.dtype)
    return ops.standardize(x, values["mean"], values["inv_std"])


def _whiten(ops, layer, x, params):
    values = _fitted(layer, ops.graph.dtype)
    return ops.dense_forward(x, values["components"], values["shift"])


def _swish(ops, layer, x, params):
    return ops.swish(x, params["beta"] if layer.trainable else layer.beta)


def _identity(ops, layer, x, params):
    return x


def _activation_layer(ops, layer, x, params):
    return _activation(ops, layer, x, layer.name)


_ACTIVATION_CLASSES = (Activation, ELU, GELU, Identity, LeakyReLU, ReLU, Sigmoid)
_CONVERTERS = {
    **dict.fromkeys(_ACTIVATION_CLASSES + (SiLU, Softmax, Tanh), _activation_layer),
    Dense: _dense,
    Dropout: _identity,
    GaussianNoise: _identity,
    BatchNorm: _batch_norm,
    PReLU: lambda ops, layer, x, params: ops.prelu(x, params["weight"]),
    Swish: _swish,
    Standardize: _standardize,
    Whiten: _whiten,
}
