"""Fused reference ops: a Dense layer and its activation as one op pair,
``y = act(x @ w + b)`` and its backward.

Mixed into :class:`~gpunn.backends.numpy_backend.NumpyBackend`. The reference composes
the layer ops (``dense_forward``, the activation, its ``backprop_*``,
``dense_backward_``), so it computes exactly what ``Dense`` followed by an
``Activation`` computes; the kernel backend overrides both ops with one kernel that
adds the bias and applies the activation, and one that takes the activation's
derivative and the bias gradient's column sums together.

Fusable activations (layer names, with the backend op that runs and what its backward
reads, as in :mod:`gpunn.layers.activations`): ``identity``/``linear`` (nothing: only
the bias), ``relu``, ``leaky_relu``, ``elu``, ``sigmoid``, ``tanh`` (the output y),
``silu``/``swish`` (beta 1) and ``gelu`` (the pre-activation z). Softmax is not fused.
"""

from __future__ import annotations

from gpunn.backends.halves import FLOAT32, in_float32

# activation name -> (backend op, what its backprop reads: "x" the pre-activation z,
# "y" the output, "" nothing)
_FUSED = {
    "identity": ("identity", ""),
    "linear": ("identity", ""),
    "relu": ("relu", "y"),
    "leaky_relu": ("leaky_relu", "y"),
    "elu": ("elu", "y"),
    "sigmoid": ("sigmoid", "y"),
    "tanh": ("tanh", "y"),
    "silu": ("silu", "x"),
    "swish": ("silu", "x"),
    "gelu": ("gelu", "x"),
}
FUSABLE = frozenset(_FUSED)


def fused_op(activation: str) -> tuple[str, str]:
    """``(op, saves)`` of a fusable activation name; ValueError for any other."""
    try:
        return _FUSED[activation]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be one of {sorted(_FUSED)} to fuse with Dense, "
            f"got {activation!r}"
        ) from None


def _expect(name: str, a, shape, dtype) -> None:
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(a.shape)}")
    if a.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {a.dtype}")


def check_dense(x, w, b) -> None:
    """Raises ValueError unless ``x`` is ``(batch, n_in)``, ``w`` ``(n_in, n_out)`` and
    ``b`` (or None) ``(n_out,)``, all of x's dtype."""
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (batch, n_in), got shape {tuple(x.shape)}")
    n_out = w.shape[-1] if w.ndim == 2 else -1
    _expect("weight", w, (x.shape[1], n_out), x.dtype)
    if b is not None:
        _expect("bias", b, (n_out,), x.dtype)


def check_dense_grads(x, w, dy, saved, dw, db, op: str) -> None:
    """:func:`check_dense` for the backward: ``dy`` and ``saved`` (unless the op is
    ``identity``) ``(batch, n_out)``, ``dw`` like ``w``, ``db`` (or None) like a bias;
    the gradients are float32 when x is 16-bit (the float32 arena of mixed
    precision), else x's dtype."""
    check_dense(x, w, None)
    grad_dtype = FLOAT32 if x.dtype.itemsize == 2 else x.dtype  # 16-bit: the arena
    if db is not None:
        _expect("dbias", db, (w.shape[1],), grad_dtype)
    _expect("dy", dy, (x.shape[0], w.shape[1]), x.dtype)
    if op != "identity":
        _expect("saved", saved, dy.shape, x.dtype)
    _expect("dweight", dw, w.shape, grad_dtype)


class FusedOps:
    """The Dense-with-activation ops; needs the layer ops of ``LayerOps``."""

    @in_float32(rounded=(0, 1))
    def dense_activation(self, x, w, b, activation: str, options: dict):
        """``y = act(x @ w + b)`` for a fusable ``activation`` (see the module) with
        its ``options`` (e.g. ``{"negative_slope": 0.2}``).

        Shape: x ``(batch, n_in)``, w ``(n_in, n_out)``, b ``(n_out,)`` or None, all of
        one dtype -> y ``(batch, n_out)``.

        Returns: ``(y, saved)``, ``saved`` being what
        :meth:`backprop_dense_activation_` needs: the pre-activation ``z = x @ w + b``
        for silu/swish and gelu, ``y`` for the others, None for identity.
        """
        op, saves = fused_op(activation)
        check_dense(x, w, b)
        z = self.dense_forward(x, w, b)
        if op == "identity":
            return z, None
        y = getattr(self, op)(z, **options)
        return y, (z if saves == "x" else y)

    @in_float32(writes=("dw", "db"), rounded_writes=("dw",))
    def backprop_dense_activation_(
        self, x, w, dy, saved, dw, db, activation: str, options: dict, need_dx=True
    ):
        """The backward of :meth:`dense_activation`: ``dz = backprop_act(dy, saved)``,
        then writes ``dw = x.T @ dz`` and ``db = dz.sum(0)`` (when ``db`` is not None)
        in place and returns ``dx = dz @ w.T`` (None without ``need_dx``). Shapes and
        dtypes are checked before anything is written (ValueError)."""
        op, _ = fused_op(activation)
        check_dense_grads(x, w, dy, saved, dw, db, op)
        if op == "identity":
            dz = dy
        else:
            dz = getattr(self, "backprop_" + op)(dy, saved, **options)
        return self.dense_backward_(x, w, dz, dw, db, need_dx)
