"""The device side of gpunn's scikit-learn MLPs: a :class:`gpunn.Sequential` of
Dense layers and scikit-learn's gradient (loss, L2 penalty, scaling) on its arena.

scikit-learn keeps ``coefs_`` (``(fan_in, fan_out)`` each) and ``intercepts_`` as
lists; gpunn keeps every parameter in one flat arena. :class:`Network` maps between
the two (``flatten`` / ``unflatten``, in scikit-learn's packing order: all
coefficients, then all intercepts), so the estimator's NumPy attributes stay the
source of truth and the device arrays follow them.
"""

from __future__ import annotations

import numpy as np

from gpunn.layers import Dense
from gpunn.model import Sequential
from gpunn.sklearn import _losses

# scikit-learn's hidden activations -> gpunn's Dense activation names
ACTIVATIONS = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
PREDICT_BATCH = 8192  # rows per forward pass in predict


class Network:
    """Dense layers of the given shapes over one arena, on ``device`` in ``dtype``.

    Args:
        shapes: ``[(fan_in, fan_out), ...]``, one per layer.
        activation: scikit-learn's hidden activation name.
        dtype: ``"float32"`` or ``"float64"``.
        device: ``"cpu"``, ``"gpu"`` or ``"auto"`` (env ``GPUNN_BACKEND`` when set,
            else the GPU when one is usable; see :func:`gpunn.get_backend`).
        precision: the model's precision policy (``"float32"`` or
            ``"mixed_bfloat16"``). Default: ``"float32"``.
    """

    def __init__(
        self, shapes, activation: str, dtype, device: str, precision="float32"
    ):
        layers = [Dense(n, activation=ACTIVATIONS[activation]) for _, n in shapes]
        layers[-1] = Dense(shapes[-1][1])  # raw outputs: the output activation is ours
        backend = _backend(device)
        self.model = Sequential(
            layers,
            input_dim=shapes[0][0],
            dtype=dtype,
            backend=backend,
            seed=0,
            precision=precision,
        )
        self.precision = precision
        self.shapes, self.activation = [tuple(s) for s in shapes], activation
        self.backend, self.xp = self.model.backend, self.model.backend.xp
        self.dtype = self.model.dtype
        arena = self.model.arena
        kernels = [s for s in arena.slots if s.name == "kernel"]
        biases = [s for s in arena.slots if s.name == "bias"]
        self.slots = kernels + biases  # scikit-learn's order
        self.pack_index = np.concatenate(
            [np.arange(s.offset, s.offset + s.size) for s in self.slots]
        )
        self._kernel_mask = np.zeros(arena.size, self.dtype)
        for slot in kernels:
            self._kernel_mask[slot.offset : slot.offset + slot.size] = 1
        self._alpha, self._alpha_mask = None, None
        self.kernels = [arena.view(arena.params, s) for s in kernels]
        self.scratch = arena.zeros_like_params()

    @property
    def params(self):
        return self.model.arena.params

    @property
    def grads(self):
        return self.model.arena.grads

    def matches(self, shapes, activation: str, dtype, device: str, precision) -> bool:
        """Whether this network has this architecture, dtype, device and precision."""
        return (
            self.shapes == [tuple(s) for s in shapes]
            and self.activation == activation
            and self.dtype == np.dtype(dtype)
            and self.backend is _backend(device)
            and self.precision == precision
        )

    def params_written(self) -> None:
        """Tells the model its float32 parameters were written (by scikit-learn's
        solvers or weights): a mixed-precision model re-casts its 16-bit copy."""
        self.model.arena.params_changed()

    # ---------------------------------------------------------------- layout
    def zeros_like_params(self):
        return self.model.arena.zeros_like_params()

    def flatten(self, arrays):
        """scikit-learn's ``coefs_ + intercepts_`` list as one device array laid out
        like the arena (padding zero)."""
        host = np.zeros(self.model.arena.size, self.dtype)
        host[self.pack_index] = np.concatenate([np.ravel(a) for a in arrays])
        return self.backend.asarray(host)

    def unflatten(self, flat) -> list[np.ndarray]:
        """A flat device array laid out like the arena as scikit-learn's list of
        NumPy arrays (``coefs_ + intercepts_``)."""
        host = self.backend.to_numpy(flat)
        return [
            host[s.offset : s.offset + s.size].reshape(s.shape).copy()
            for s in self.slots
        ]

    def set_weights(self, coefs, intercepts) -> None:
        self.params[...] = self.flatten(list(coefs) + list(intercepts))
        self.params_written()

    def get_weights(self) -> tuple[list, list]:
        """``(coefs_, intercepts_)`` as NumPy arrays."""
        arrays = self.unflatten(self.params)
        n = len(self.shapes)
        return arrays[:n], arrays[n:]

    def set_packed(self, packed) -> None:
        """Parameters from a vector in scikit-learn's packing order (L-BFGS)."""
        host = np.zeros(self.model.arena.size, self.dtype)
        host[self.pack_index] = packed
        self.params[...] = self.backend.asarray(host)
        self.params_written()

    def packed_grads(self) -> np.ndarray:
        """The gradients as a float64 vector in scikit-learn's packing order."""
        return self.backend.to_numpy(self.grads)[self.pack_index].astype(np.float64)

    # ---------------------------------------------------------------- compute
    def to_device(self, a):
        return None if a is None else self.backend.asarray(a, dtype=self.dtype)

    def outputs(self, x, out_activation: str, training: bool = False):
        """The network's predictions for a device batch ``x``: the output
        activation applied to the last layer's raw outputs."""
        z = self.model.forward(x, training)
        return _losses.output(self.backend, z, out_activation)

    def predict(self, X, out_activation: str) -> np.ndarray:
        """Predictions for host ``X`` as a NumPy array ``(n, n_outputs)``."""
        self.backend.set_tf32(False)
        parts = []
        for start in range(0, len(X), PREDICT_BATCH):
            x = self.to_device(X[start : start + PREDICT_BATCH])
            parts.append(self.backend.to_numpy(self.outputs(x, out_activation)))
        return np.concatenate(parts)

    def gradient_(self, x, y, w, loss: str, out_activation: str, alpha: float):
        """scikit-learn's backprop on one device batch: writes the gradient of the
        batch loss into the arena and returns the loss (0-d device array).

        ``loss = L(y, p) + alpha / 2 * sum(||W||^2) / s``; the gradient of a
        coefficient is ``(a^T delta + alpha W) / s``, of an intercept ``sum(delta)
        / s``, with ``s`` the batch size or its sample-weight sum.
        """
        xp = self.xp
        p = self.outputs(x, out_activation, training=True)
        value, delta = _losses.loss_and_delta(self.backend, loss, y, p, w)
        total = len(x) if w is None else w.sum()
        squares = 0
        for kernel in self.kernels:
            flat = kernel.ravel()
            squares = squares + xp.dot(flat, flat)
        value = value + (0.5 * alpha) * squares / total
        self.model.backward(delta)
        grads = self.grads
        if alpha:  # alpha * W, added to the coefficients' gradients only
            xp.multiply(self._l2_mask(alpha), self.params, out=self.scratch)
            grads += self.scratch
        grads /= total
        return value

    def _l2_mask(self, alpha: float):
        """``alpha`` at the coefficients' places in the arena, 0 elsewhere."""
        if alpha != self._alpha:
            self._alpha = alpha
            self._alpha_mask = self.backend.asarray(self._kernel_mask * alpha)
        return self._alpha_mask

    def loss_grad(self, packed, X, y, w, loss: str, out_activation: str, alpha):
        """The full-batch loss (float) and gradient (float64 vector, packing order)
        at ``packed``: the objective L-BFGS minimizes."""
        self.set_packed(packed)
        value = self.gradient_(X, y, w, loss, out_activation, alpha)
        return float(self.backend.to_numpy(value)), self.packed_grads()


def _backend(device: str):
    """The backend of ``device``; ``"auto"`` honours env ``GPUNN_BACKEND``."""
    from gpunn.backends import get_backend

    return get_backend(None if device == "auto" else device)
