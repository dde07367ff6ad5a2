"""Layer ops of the reference backend: dense, activations, weight penalties, dropout
and normalization.

Mixed into :class:`~gpunn.backends.numpy_backend.NumpyBackend` (see its module for the
conventions), written once against ``self.xp``; ``CupyBackend`` runs them on the GPU
unchanged. Given float16 or bfloat16 arrays (mixed precision), an op computes on their
float32 values and rounds its output back once (:func:`~gpunn.backends.halves.
in_float32`); float32 arrays it writes in place (gradients in the float32 arena) and
float32 statistics stay float32.
"""

from __future__ import annotations

from gpunn.backends import philox, special
from gpunn.backends.halves import in_float32


class LayerOps:
    """The forward and backward ops of the layers; needs ``self.xp``."""

    # ---------------------------------------------------------------- dense
    @in_float32()
    def dense_forward(self, x, w, b=None):
        """``y = x @ w + b``. Shape: x ``(batch, n_in)``, w ``(n_in, n_out)``, b
        ``(n_out,)`` -> y ``(batch, n_out)``."""
        y = x @ w
        if b is not None:
            y += b
        return y

    @in_float32(writes=("dw", "db"), rounded_writes=("dw",))
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

    @in_float32()
    def relu(self, x):
        """``max(x, 0)``."""
        return self.xp.maximum(x, 0)

    @in_float32()
    def backprop_relu(self, dy, y):
        """``dy * (y > 0)``: the subgradient at 0 is 0, as in PyTorch."""
        return dy * (y > 0)

    @in_float32()
    def leaky_relu(self, x, negative_slope=0.01):
        """``x if x > 0 else negative_slope * x`` (PyTorch's ``LeakyReLU``)."""
        return self.xp.where(x > 0, x, x * negative_slope)

    @in_float32()
    def backprop_leaky_relu(self, dy, y, negative_slope=0.01):
        """``dy * (1 if y > 0 else negative_slope)``: ``negative_slope`` at 0, as in
        PyTorch. Needs ``negative_slope >= 0`` (then ``y > 0`` exactly if ``x > 0``)."""
        return self.xp.where(y > 0, dy, dy * negative_slope)

    @in_float32()
    def elu(self, x, alpha=1.0):
        """``x if x > 0 else alpha * (exp(x) - 1)`` (Clevert et al. 2016)."""
        xp = self.xp
        return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))

    @in_float32()
    def backprop_elu(self, dy, y, alpha=1.0):
        """``dy * (1 if y > 0 else y + alpha)``: ``alpha`` at 0, as in PyTorch. Needs
        ``alpha > 0`` (then ``y > 0`` exactly when ``x > 0``)."""
        return self.xp.where(y > 0, dy, dy * (y + alpha))

    @in_float32()
    def silu(self, x):
        """``x * sigmoid(x)`` (SiLU, Swish with beta 1)."""
        return x * self.sigmoid(x)

    @in_float32()
    def backprop_silu(self, dy, x):
        """``dy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``: from the input."""
        s = self.sigmoid(x)
        return dy * s * (1 + x * (1 - s))

    @in_float32()
    def swish(self, x, beta=1.0):
        """``x * sigmoid(beta * x)``; ``beta`` a Python float or a device array of
        shape ``(1,)`` (a trainable parameter)."""
        return x * self.sigmoid(beta * x)

    @in_float32(writes=("dbeta",))
    def backprop_swish_(self, dy, x, beta=1.0, dbeta=None):
        """Returns ``dx = dy * (s + beta * x * s * (1 - s))`` with ``s =
        sigmoid(beta * x)``; with ``dbeta`` (shape ``(1,)``) also writes ``dbeta =
        sum(dy * x**2 * s * (1 - s))`` over all elements, in place."""
        s = self.sigmoid(beta * x)
        t = x * s * (1 - s)
        if dbeta is not None:
            dbeta[...] = (dy * x * t).sum()
        return dy * (s + beta * t)

    @in_float32()
    def prelu(self, x, weight):
        """``x if x > 0 else weight * x`` (PyTorch's ``PReLU``); ``weight`` of shape
        ``(1,)`` (one slope) or ``(n,)`` (one per unit). Shape: ``(batch, n)``."""
        return self.xp.where(x > 0, x, x * weight)

    @in_float32(writes=("dweight",))
    def backprop_prelu_(self, dy, x, weight, dweight, need_dx=True):
        """Writes ``dweight = sum(dy * min(x, 0))`` in place (over the batch; over the
        units too for one slope); returns ``dx = dy * (1 if x > 0 else weight)`` (None
        without ``need_dx``). At 0, as PyTorch: ``dx = weight * dy``, no slope grad."""
        xp = self.xp
        dslope = dy * xp.minimum(x, 0)
        if dweight.size == 1:
            dweight[...] = dslope.sum()
        else:
            dslope.sum(axis=0, out=dweight)
        return xp.where(x > 0, dy, dy * weight) if need_dx else None

    def erf(self, x):
        """The error function, by W. J. Cody's rational approximations (within a few
        ulp in float64); see :func:`gpunn.backends.special.erf`."""
        return special.erf(self.xp, x)

    @in_float32()
    def gelu(self, x, approximate="none"):
        """``x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))`` (Hendrycks & Gimpel 2016);
        with ``approximate="tanh"``, ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715
        * x**3)))``. PyTorch's ``GELU``."""
        if special.gelu_is_tanh(approximate):
            return 0.5 * x * (1 + self.xp.tanh(special.gelu_tanh_inner(x)))
        return 0.5 * x * (1 + self.erf(x * special.INV_SQRT_2))

    @in_float32()
    def backprop_gelu(self, dy, x, approximate="none"):
        """``dy * (Phi(x) + x * phi(x))`` (or the tanh form's derivative): from the
        input."""
        xp = self.xp
        if special.gelu_is_tanh(approximate):
            t = xp.tanh(special.gelu_tanh_inner(x))
            dinner = special.SQRT_2_OVER_PI * (1 + 3 * special.GELU_TANH_CUBIC * x * x)
            return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner)
        cdf = 0.5 * (1 + self.erf(x * special.INV_SQRT_2))
        return dy * (cdf + x * special.INV_SQRT_2PI * xp.exp(-0.5 * x * x))

    @in_float32()
    def sigmoid(self, x):
        """``1 / (1 + exp(-x))`` without overflow for large ``|x|``."""
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))

    @in_float32()
    def backprop_sigmoid(self, dy, y):
        """``dy * y * (1 - y)`` with ``y = sigmoid(x)``."""
        return dy * y * (1 - y)

    @in_float32()
    def tanh(self, x):
        return self.xp.tanh(x)

    @in_float32()
    def backprop_tanh(self, dy, y):
        """``dy * (1 - y**2)`` with ``y = tanh(x)``."""
        return dy * (1 - y * y)

    @in_float32()
    def softmax(self, x, temperature=1.0):
        """Row-wise ``softmax(x / temperature)``, shifted by the row max. Shape
        ``(batch, classes)``."""
        if temperature != 1.0:
            x = x / temperature
        e = self.xp.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    @in_float32()
    def backprop_softmax(self, dy, y, temperature=1.0):
        """``y * (dy - sum(dy * y, axis=1)) / temperature``: the Jacobian-vector
        product."""
        dx = y * (dy - (dy * y).sum(axis=1, keepdims=True))
        if temperature != 1.0:
            dx /= temperature
        return dx

    # weight penalties (gpunn.regularizers): Keras' L1L2
    def l1_l2_penalty(self, w, l1=0.0, l2=0.0):
        """``l1 * sum(|w|) + l2 * sum(w**2)`` as a 0-d array of ``w``'s dtype; a zero
        strength skips its term."""
        xp = self.xp
        total = xp.zeros((), dtype=w.dtype)
        if l1:
            total = total + l1 * xp.abs(w).sum()
        if l2:
            total = total + l2 * (w * w).sum()
        return total

    def add_l1_l2_grad_(self, w, dw, l1=0.0, l2=0.0) -> None:
        """``dw += l1 * sign(w) + 2 * l2 * w`` in place (``sign(0) = 0``)."""
        if l1:
            dw += l1 * self.xp.sign(w)
        if l2:
            dw += (2 * l2) * w

    # ---------------------------------------------------------------- random
    @in_float32(rounded=(0,))
    def dropout(self, x, rate: float, generator):
        """Inverted dropout: ``y = x * keep / (1 - rate)``, each element zeroed with
        probability ``rate``, so ``E[y] = x``. ``rate`` in ``[0, 1)``.

        Element ``j`` (row-major) is kept iff word ``j`` of ``generator``'s stream is
        ``>= floor(rate * 2**64)`` (:mod:`gpunn.backends.philox`): with a
        :class:`~gpunn.backends.philox.CounterRNG` the kernels draw the same mask bit
        for bit. The scale ``1 / (1 - rate)`` is rounded once to x's dtype.

        Args:
            x: the input, ``(batch, n)`` (any shape works).
            rate: probability of zeroing an element.
            generator: a ``CounterRNG`` (or a NumPy generator: its raw words).

        Returns: ``(y, mask)``; ``mask`` is a small
        :class:`~gpunn.backends.philox.DropoutMask` (a bool keep array here) for
        :meth:`backprop_dropout`, never a float tensor.
        """
        threshold = philox.dropout_threshold(rate)
        words = self.xp.asarray(philox.raw_words(generator, x.size))
        keep = (words >= threshold).reshape(x.shape)
        mask = philox.DropoutMask(tuple(x.shape), 1 / (1 - rate), keep=keep)
        return x * mask.multiplier(self.xp, x.dtype), mask

    @in_float32()
    def backprop_dropout(self, dy, mask):
        """``dy * keep / (1 - rate)`` with the mask :meth:`dropout` returned (in
        dy's dtype); ValueError when dy's shape is not the mask's."""
        mask.check(dy)
        return dy * mask.multiplier(self.xp, dy.dtype)

    @in_float32()
    def gaussian_noise(self, x, stddev: float, generator):
        """``x + stddev * z`` with ``z ~ N(0, 1)`` drawn from ``generator`` in x's
        dtype."""
        y = generator.standard_normal(x.shape, dtype=x.dtype)
        y *= stddev
        y += x
        return y

    # ---------------------------------------------------------------- normalization
    @in_float32(rounded=(0,), writes=("running_mean", "running_var"))
    def batch_norm_train_(
        self, x, gamma, beta, running_mean, running_var, momentum: float, eps: float
    ):
        """Batch normalization in training mode (PyTorch ``BatchNorm1d``); updates the
        running statistics in place.

        ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the batch mean and
        the biased batch variance ``var``; then ``running_mean = (1 - momentum) *
        running_mean + momentum * mean`` and ``running_var`` likewise with the
        unbiased variance ``var * n / (n - 1)``. ``gamma``, ``beta`` None: no affine.

        Shape: x ``(n, features)`` with ``n >= 2`` (checked by the caller), the other
        arrays ``(features,)``. Returns: ``(y, x_hat, inv_std)``, the last two being
        what :meth:`backprop_batch_norm_` needs.
        """
        n = x.shape[0]
        mean = x.mean(axis=0)
        x_hat = x - mean
        var = (x_hat * x_hat).mean(axis=0)
        inv_std = 1 / self.xp.sqrt(var + eps)
        x_hat *= inv_std
        y = x_hat if gamma is None else x_hat * gamma + beta
        unbiased = var * (n / (n - 1))
        for running, batch in ((running_mean, mean), (running_var, unbiased)):
            running *= 1 - momentum
            running += momentum * batch
        return y, x_hat, inv_std

    @in_float32()
    def batch_norm_eval(self, x, gamma, beta, running_mean, running_var, eps: float):
        """``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``
        (``gamma``, ``beta`` None: no affine). Shape: x ``(batch, features)``."""
        scale = 1 / self.xp.sqrt(running_var + eps)
        if gamma is not None:
            scale *= gamma
        y = x - running_mean
        y *= scale
        if beta is not None:
            y += beta
        return y

    @in_float32(writes=("dgamma", "dbeta"))
    def backprop_batch_norm_(
        self, dy, x_hat, inv_std, gamma, dgamma, dbeta, need_dx=True
    ):
        """Gradients of :meth:`batch_norm_train_`, through the batch statistics.

        Writes ``dgamma = sum_i(dy * x_hat)`` and ``dbeta = sum_i(dy)`` in place (when
        not None) and returns ``dx = gamma * inv_std * (dy - mean_i(dy) - x_hat *
        mean_i(dy * x_hat))``, or None when ``need_dx`` is false.
        """
        sum_dy = dy.sum(axis=0)
        sum_dy_xhat = (dy * x_hat).sum(axis=0)
        if dgamma is not None:
            dgamma[...] = sum_dy_xhat
        if dbeta is not None:
            dbeta[...] = sum_dy
        if not need_dx:
            return None
        dx = x_hat * sum_dy_xhat
        dx += sum_dy
        dx *= -1 / dy.shape[0]
        dx += dy
        dx *= inv_std if gamma is None else gamma * inv_std
        return dx

    @in_float32()
    def standardize(self, x, mean, inv_std):
        """``(x - mean) * inv_std`` per feature. Shape: x ``(batch, n)``, ``mean`` and
        ``inv_std`` ``(n,)``."""
        y = x - mean
        y *= inv_std
        return y

    @in_float32()
    def backprop_standardize(self, dy, inv_std):
        """``dy * inv_std``: the gradient of :meth:`standardize`."""
        return dy * inv_std
