"""The reference backend: every op written once against ``self.xp``.

``CupyBackend`` subclasses this class with ``xp = cupy`` and overrides only the ops a
custom kernel makes faster; everything else runs this code unchanged on the GPU. So each
formula here is *the* definition of the op, and the kernels are tested against it.

Conventions: arrays are ``(batch, features)``; an op never changes its inputs unless its
name ends in ``_``; outputs keep the input dtype (Python scalars are weak under NumPy 2 /
CuPy 14 promotion rules, so ``x * 0.5`` stays float32). Losses return a 0-d device array
so a training step never waits for the device just to read the loss.
"""

from __future__ import annotations

import numpy as np

from gpunn.backends import updates

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class NumpyBackend:
    """Runs every op with NumPy on the CPU."""

    name = "cpu"
    xp = np

    # ---------------------------------------------------------------- arrays
    def asarray(self, x, dtype=None):
        """Moves ``x`` to this backend (a no-op for arrays already here)."""
        if hasattr(x, "__cuda_array_interface__"):
            raise TypeError(
                "got a GPU (CuPy) array but this model runs on the CPU backend; "
                "pass x.get() or build the model with backend='gpu'"
            )
        return np.asarray(x, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        """Copies ``x`` to a host NumPy array."""
        return np.asarray(x)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def take_rows(self, x, index):
        """``x[index]`` for a 1-D device index array, as a new contiguous array."""
        return self.xp.take(x, index, axis=0)

    def synchronize(self) -> None:
        """Waits for queued device work (nothing to wait for on the CPU)."""

    # ---------------------------------------------------------------- dense
    def dense_forward(self, x, w, b=None):
        """``y = x @ w + b``. Shape: x ``(batch, n_in)``, w ``(n_in, n_out)``, b
        ``(n_out,)`` -> y ``(batch, n_out)``."""
        y = x @ w
        if b is not None:
            y += b
        return y

    def dense_backward_(self, x, w, dy, dw, db=None, need_dx=True):
        """Writes ``dw = x.T @ dy`` and ``db = dy.sum(0)`` in place; returns
        ``dx = dy @ w.T`` (or None when ``need_dx`` is false)."""
        self.xp.matmul(x.T, dy, out=dw)
        if db is not None:
            dy.sum(axis=0, out=db)
        return dy @ w.T if need_dx else None

    # ---------------------------------------------------------------- activations
    def identity(self, x):
        return x

    def backprop_identity(self, dy, y):
        return dy

    def relu(self, x):
        """``max(x, 0)``."""
        return self.xp.maximum(x, 0)

    def backprop_relu(self, dy, y):
        """``dy * (y > 0)``: the subgradient at 0 is 0, as in PyTorch."""
        return dy * (y > 0)

    def sigmoid(self, x):
        """``1 / (1 + exp(-x))`` without overflow for large ``|x|``."""
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def backprop_sigmoid(self, dy, y):
        """``dy * y * (1 - y)`` with ``y = sigmoid(x)``."""
        return dy * y * (1 - y)

    def tanh(self, x):
        return self.xp.tanh(x)

    def backprop_tanh(self, dy, y):
        """``dy * (1 - y**2)`` with ``y = tanh(x)``."""
        return dy * (1 - y * y)

    def softmax(self, x):
        """Row-wise ``exp(x) / sum(exp(x))``, shifted by the row max. Shape ``(batch,
        classes)``."""
        e = self.xp.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def backprop_softmax(self, dy, y):
        """``y * (dy - sum(dy * y, axis=1))``: the softmax Jacobian-vector product."""
        return y * (dy - (dy * y).sum(axis=1, keepdims=True))

    # ---------------------------------------------------------------- losses
    def softmax_cross_entropy(self, logits, labels):
        """Mean cross-entropy of softmax(logits) against integer labels, and its
        gradient, in one call.

        ``loss = mean_i(logsumexp(z_i) - z_i[y_i])``; ``dlogits = (softmax(z) -
        onehot(y)) / batch``. Stable for any finite logits and for ``-inf`` logits that
        are not the label's.

        Shape: logits ``(batch, classes)``, labels ``(batch,)`` integers in
        ``[0, classes)`` (the range is checked by the caller, once per dataset).
        Returns: ``(loss, dlogits)``, loss a 0-d array of the logits' dtype.
        """
        n = logits.shape[0]
        if logits.ndim != 2 or labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ValueError(
                f"softmax_cross_entropy needs integer labels of shape ({n},) for logits "
                f"of shape {logits.shape}, got {labels.dtype} labels of shape "
                f"{labels.shape}"
            )
        xp = self.xp
        rows = xp.arange(n)
        shifted = logits - logits.max(axis=1, keepdims=True)
        dlogits = xp.exp(shifted)
        sums = dlogits.sum(axis=1, keepdims=True)
        # sum_i(lse_i - z_i[y_i]): both sums are >= 0, so no cancellation
        batch = max(n, 1)
        loss = (xp.log(sums).sum() - shifted[rows, labels].sum()) / batch
        sums *= batch
        dlogits /= sums
        dlogits[rows, labels] -= 1 / batch
        return loss, dlogits

    def binary_cross_entropy(self, logits, targets):
        """Mean binary cross-entropy of sigmoid(logits) against targets in [0, 1], and
        its gradient, as PyTorch's ``BCEWithLogitsLoss`` (mean over all elements).

        ``loss = mean(max(z, 0) - z * t + log1p(exp(-|z|)))``; ``dlogits = (sigmoid(z)
        - t) / z.size``. Shape: logits and targets alike, e.g. ``(batch, 1)``.
        """
        _check_like("binary_cross_entropy", logits, targets)
        xp = self.xp
        count = max(logits.size, 1)
        loss = (
            xp.maximum(logits, 0) - logits * targets + xp.log1p(xp.exp(-xp.abs(logits)))
        ).sum() / count
        dlogits = (self.sigmoid(logits) - targets) / count
        return loss, dlogits

    def mse(self, outputs, targets):
        """Mean squared error over all elements (PyTorch's ``MSELoss``) and its
        gradient ``2 * (outputs - targets) / outputs.size``."""
        _check_like("mse", outputs, targets)
        count = max(outputs.size, 1)
        diff = outputs - targets
        loss = (diff * diff).sum() / count
        return loss, diff * (2 / count)

    # ---------------------------------------------------------------- reductions
    def count_correct(self, outputs, targets, kind: str):
        """Number of correct predictions as a 0-d device array. ``kind`` is
        ``"multiclass"`` (argmax vs integer labels), ``"binary"`` (logit > 0 vs 0/1
        targets, element-wise)."""
        if kind == "multiclass":
            return (outputs.argmax(axis=1) == targets).sum()
        return ((outputs > 0) == (targets > 0.5)).sum()

    def all_finite(self, x) -> bool:
        return bool(self.xp.isfinite(x).all())

    # ---------------------------------------------------------------- optimizers
    def sgd_update_(self, param, grad, momentum_buf, **hyper) -> None:
        """One ``torch.optim.SGD`` step over flat arrays, in place.

        ``g = -grad if maximize else grad; g += weight_decay * p``; with momentum
        ``buf = g`` on the first step else ``buf = momentum * buf + (1 - dampening) * g``,
        then ``g = g + momentum * buf`` (Nesterov) or ``g = buf``; ``p -= lr * g``.

        Keywords: lr, momentum, dampening, nesterov, weight_decay, maximize, first_step.
        """
        arrays = (param, grad, momentum_buf)
        self._check_flat(("param", "grad", "momentum_buf"), arrays)
        self._foreach_block(updates.sgd_, arrays, hyper)

    def adam_update_(
        self, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, **hyper
    ) -> None:
        """One ``torch.optim.Adam`` / ``AdamW`` step over flat arrays, in place.

        ``m = m + (1 - b1) * (g - m)``; ``v = b2 * v + (1 - b2) * g * g``;
        ``p -= step_size * m / (sqrt(v) / sqrt(1 - b2**t) + eps)`` with
        ``step_size = lr / (1 - b1**t)`` computed on the host. Weight decay is added to
        the gradient (Adam) or applied as ``p *= 1 - lr * weight_decay`` first
        (``decoupled``, AdamW). With ``max_exp_avg_sq`` (AMSGrad) the running maximum of
        ``v`` replaces ``v`` in the denominator.

        Keywords: lr, beta1, beta2, eps, weight_decay, decoupled, maximize, step_size,
        bias_correction2_sqrt.
        """
        arrays = (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
        names = ("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        self._check_flat(names, arrays)
        self._foreach_block(updates.adam_, arrays, hyper)

    def _foreach_block(self, fn, arrays, hyper) -> None:
        """How an elementwise update runs: cache-sized blocks and all cores on CPU."""
        updates.foreach_block(fn, self.xp, arrays, hyper)

    @staticmethod
    def _check_flat(names, arrays) -> None:
        """Raises ValueError (before anything is written) unless every array is a
        contiguous 1-D float array of the param's size and dtype (None: absent)."""
        param = arrays[0]
        for name, a in zip(names, arrays):
            if a is None:
                continue
            if a.dtype not in FLOAT_DTYPES or a.dtype != param.dtype:
                raise ValueError(
                    f"{name} must be float32 or float64 like param ({param.dtype}), "
                    f"got {a.dtype}"
                )
            if a.ndim != 1 or a.shape != param.shape or not a.flags.c_contiguous:
                raise ValueError(
                    f"{name} must be a contiguous 1-D array of shape {param.shape}, "
                    f"got shape {a.shape}"
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_like(op: str, outputs, targets) -> None:
    """A fused loss needs targets of the outputs' shape and dtype (no broadcasting)."""
    if targets.shape != outputs.shape or targets.dtype != outputs.dtype:
        raise ValueError(
            f"{op} needs targets of the outputs' shape {outputs.shape} and dtype "
            f"{outputs.dtype}, got shape {targets.shape} and dtype {targets.dtype}"
        )
