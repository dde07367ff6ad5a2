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

from gpunn.backends import special, updates

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

    def leaky_relu(self, x, negative_slope=0.01):
        """``x if x > 0 else negative_slope * x`` (PyTorch's ``LeakyReLU``)."""
        return self.xp.where(x > 0, x, x * negative_slope)

    def backprop_leaky_relu(self, dy, y, negative_slope=0.01):
        """``dy * (1 if y > 0 else negative_slope)``: ``negative_slope`` at 0, as in
        PyTorch. Needs ``negative_slope >= 0`` (then ``y > 0`` exactly if ``x > 0``)."""
        return self.xp.where(y > 0, dy, dy * negative_slope)

    def elu(self, x, alpha=1.0):
        """``x if x > 0 else alpha * (exp(x) - 1)`` (Clevert et al. 2016)."""
        xp = self.xp
        return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))

    def backprop_elu(self, dy, y, alpha=1.0):
        """``dy * (1 if y > 0 else y + alpha)``: ``alpha`` at 0, as in PyTorch. Needs
        ``alpha > 0`` (then ``y > 0`` exactly when ``x > 0``)."""
        return self.xp.where(y > 0, dy, dy * (y + alpha))

    def silu(self, x):
        """``x * sigmoid(x)`` (SiLU, Swish with beta 1)."""
        return x * self.sigmoid(x)

    def backprop_silu(self, dy, x):
        """``dy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``: from the input."""
        s = self.sigmoid(x)
        return dy * s * (1 + x * (1 - s))

    def swish(self, x, beta=1.0):
        """``x * sigmoid(beta * x)``; ``beta`` a Python float or a device array of
        shape ``(1,)`` (a trainable parameter)."""
        return x * self.sigmoid(beta * x)

    def backprop_swish_(self, dy, x, beta=1.0, dbeta=None):
        """Returns ``dx = dy * (s + beta * x * s * (1 - s))`` with ``s =
        sigmoid(beta * x)``; with ``dbeta`` (shape ``(1,)``) also writes ``dbeta =
        sum(dy * x**2 * s * (1 - s))`` over all elements, in place."""
        s = self.sigmoid(beta * x)
        t = x * s * (1 - s)
        if dbeta is not None:
            dbeta[...] = (dy * x * t).sum()
        return dy * (s + beta * t)

    def prelu(self, x, weight):
        """``x if x > 0 else weight * x`` (PyTorch's ``PReLU``); ``weight`` of shape
        ``(1,)`` (one slope) or ``(n,)`` (one per unit). Shape: ``(batch, n)``."""
        return self.xp.where(x > 0, x, x * weight)

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

    def gelu(self, x, approximate="none"):
        """``x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))`` (Hendrycks & Gimpel 2016);
        with ``approximate="tanh"``, ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715
        * x**3)))``. PyTorch's ``GELU``."""
        if special.gelu_is_tanh(approximate):
            return 0.5 * x * (1 + self.xp.tanh(special.gelu_tanh_inner(x)))
        return 0.5 * x * (1 + self.erf(x * special.INV_SQRT_2))

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

    def softmax(self, x, temperature=1.0):
        """Row-wise ``softmax(x / temperature)``, shifted by the row max. Shape
        ``(batch, classes)``."""
        if temperature != 1.0:
            x = x / temperature
        e = self.xp.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

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
    def generator(self, seed: int):
        """A random generator for this backend's arrays seeded with ``seed``
        (``numpy.random.default_rng``); no global RNG state is read or changed."""
        return np.random.default_rng(seed)

    def dropout(self, x, rate: float, generator):
        """Inverted dropout: ``y = x * mask`` with ``mask = (u >= rate) / (1 - rate)``
        and ``u ~ U[0, 1)`` drawn from ``generator`` in x's dtype, so each element is
        zeroed with probability ``rate`` and ``E[y] = x``. ``rate`` in ``[0, 1)``.

        Returns: ``(y, mask)``, the mask in x's dtype with the scale folded in.
        """
        keep = generator.random(x.shape, dtype=x.dtype) >= rate
        mask = keep.astype(x.dtype)
        mask *= 1 / (1 - rate)
        return x * mask, mask

    def backprop_dropout(self, dy, mask):
        """``dy * mask`` with the mask :meth:`dropout` returned."""
        return dy * mask

    def gaussian_noise(self, x, stddev: float, generator):
        """``x + stddev * z`` with ``z ~ N(0, 1)`` drawn from ``generator`` in x's
        dtype."""
        y = generator.standard_normal(x.shape, dtype=x.dtype)
        y *= stddev
        y += x
        return y

    # ---------------------------------------------------------------- normalization
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

    def standardize(self, x, mean, inv_std):
        """``(x - mean) * inv_std`` per feature. Shape: x ``(batch, n)``, ``mean`` and
        ``inv_std`` ``(n,)``."""
        y = x - mean
        y *= inv_std
        return y

    def backprop_standardize(self, dy, inv_std):
        """``dy * inv_std``: the gradient of :meth:`standardize`."""
        return dy * inv_std

    # ---------------------------------------------------------------- losses
    def softmax_cross_entropy(
        self,
        logits,
        labels,
        sample_weight=None,
        class_weight=None,
        label_smoothing: float = 0.0,
        temperature: float = 1.0,
    ):
        """Cross-entropy of ``softmax(logits / temperature)`` and its gradient in one
        call: PyTorch's ``CrossEntropyLoss(weight=class_weight,
        label_smoothing=ls)`` (mean reduction), each sample's term times ``s_i``.

        With ``nll_ic = logsumexp(z_i) - z_ic`` and class weights ``w`` (1 when None):
        integer labels ``y``: ``loss = sum_i s_i ((1 - ls) w[y_i] nll_i[y_i] + ls / C
        sum_c w_c nll_ic) / D`` with ``D = sum_i w[y_i]`` (``batch`` without class
        weights; sample weights do not enter ``D``); probability rows ``t``: ``loss =
        sum_i s_i sum_c w_c t'_ic nll_ic / batch``, ``t' = (1 - ls) t + ls / C``. The
        gradient is ``(m_i softmax(z_i) - q_i) / temperature``, ``q_i`` the weighted
        target mass of row ``i`` and ``m_i`` its sum. Stable for any finite logits and
        for ``-inf`` logits that get no target mass.

        Shape: logits ``(batch, C)``; labels ``(batch,)`` integers in ``[0, C)`` (the
        range is checked by the caller, once per dataset) or rows ``(batch, C)``;
        sample_weight ``(batch,)``, class_weight ``(C,)``; floats of the logits' dtype.
        Returns: ``(loss, dlogits)``, loss a 0-d array of the logits' dtype.
        """
        self._check_cross_entropy(logits, labels, sample_weight, class_weight)
        z = logits if temperature == 1 else logits / temperature
        shifted = z - z.max(axis=1, keepdims=True)
        dlogits = self.xp.exp(shifted)
        sums = dlogits.sum(axis=1, keepdims=True)
        fill_ = self._ce_labels_ if labels.ndim == 1 else self._ce_rows_
        loss = fill_(
            dlogits, shifted, sums, labels, sample_weight, class_weight, label_smoothing
        )
        if temperature != 1:
            dlogits /= temperature
        return loss, dlogits

    def _ce_labels_(self, dlogits, shifted, sums, labels, sw, cw, ls):
        """Integer labels: turns ``dlogits = exp(shifted)`` into ``m p - q`` in place
        and returns the loss (see :meth:`softmax_cross_entropy`)."""
        xp, (n, c) = self.xp, shifted.shape
        rows = xp.arange(n)
        w = 1 if cw is None else cw[labels]
        coef = 1 / max(n, 1) if cw is None else 1 / w.sum()
        coef = coef if sw is None else sw * coef
        hard = coef * w * (1 - ls)
        log_sums = xp.log(sums)
        loss = ((log_sums[:, 0] - shifted[rows, labels]) * hard).sum()
        mass = _column(hard)
        if ls:
            soft = _column(coef * (ls / c))
            w_all, total = (1, c) if cw is None else (cw, cw.sum())
            # sum_c w_c nll_ic = W lse_i - sum_c w_c shifted_ic: both terms >= 0
            spread = total * log_sums - (shifted * w_all).sum(axis=1, keepdims=True)
            loss = loss + (soft * spread).sum()
            mass = mass + soft * total
        dlogits *= mass / sums
        dlogits[rows, labels] -= hard
        if ls:
            dlogits -= soft * w_all
        return loss

    def _ce_rows_(self, dlogits, shifted, sums, targets, sw, cw, ls):
        """Probability rows: see :meth:`_ce_labels_`."""
        n, c = shifted.shape
        q = targets * (1 - ls) + ls / c if ls else targets
        q = q * (1 / max(n, 1) if sw is None else sw[:, None] / max(n, 1))
        if cw is not None:
            q *= cw
        nll = self.xp.log(sums) - shifted
        # a -inf logit without target mass adds 0 (not 0 * inf = nan)
        loss = (q * self.xp.where(q != 0, nll, 0)).sum()
        dlogits *= q.sum(axis=1, keepdims=True) / sums
        dlogits -= q
        return loss

    def binary_cross_entropy(
        self,
        logits,
        targets,
        sample_weight=None,
        pos_weight=None,
        label_smoothing: float = 0.0,
    ):
        """Binary cross-entropy of ``sigmoid(logits)`` and its gradient in one call:
        PyTorch's ``BCEWithLogitsLoss(pos_weight=p)`` (mean over all elements), each
        sample's terms times ``s_i``, targets smoothed as Keras' ``t (1 - ls) +
        ls / 2``.

        ``loss = sum_i s_i sum_j ((1 + (p_j - 1) t_ij) softplus(z_ij) - p_j t_ij z_ij)
        / z.size`` (``= max(z, 0) - z t + log1p(exp(-|z|))`` for ``p = 1``);
        ``dlogits = s_i ((1 + (p - 1) t) sigmoid(z) - p t) / z.size``.

        Shape: logits and targets ``(batch, k)``, sample_weight ``(batch,)``,
        pos_weight ``(k,)`` or ``(1,)``, all of the logits' dtype.
        """
        _check_like("binary_cross_entropy", logits, targets)
        n, k = logits.shape
        _check_vector("binary_cross_entropy", "sample_weight", sample_weight, n, logits)
        _check_vector("binary_cross_entropy", "pos_weight", pos_weight, k, logits, 1)
        xp = self.xp
        t = targets
        if label_smoothing:
            t = t * (1 - label_smoothing) + 0.5 * label_smoothing
        softplus = xp.maximum(logits, 0) + xp.log1p(xp.exp(-xp.abs(logits)))
        if pos_weight is None:
            values, grads = softplus - logits * t, self.sigmoid(logits) - t
        else:
            pt = pos_weight * t
            scale = 1 + pt - t
            values = scale * softplus - pt * logits
            grads = scale * self.sigmoid(logits) - pt
        return _weighted_mean(values, grads, sample_weight)

    def mse(self, outputs, targets, sample_weight=None):
        """Mean squared error over all elements (PyTorch's ``MSELoss``), each sample's
        terms times ``s_i``, and its gradient ``2 s_i (outputs - targets) / size``."""
        diff = self._residual("mse", outputs, targets, sample_weight)
        return _weighted_mean(diff * diff, diff, sample_weight, factor=2)

    def mae(self, outputs, targets, sample_weight=None):
        """Mean absolute error over all elements (PyTorch's ``L1Loss``), each sample's
        terms times ``s_i``; gradient ``s_i sign(outputs - targets) / size`` (0 at
        0)."""
        diff = self._residual("mae", outputs, targets, sample_weight)
        return _weighted_mean(self.xp.abs(diff), self.xp.sign(diff), sample_weight)

    def huber(self, outputs, targets, sample_weight=None, delta: float = 1.0):
        """Huber loss over all elements (PyTorch's ``HuberLoss(delta)``): ``0.5 d^2``
        where ``|d| < delta`` else ``delta (|d| - delta / 2)``, ``d = outputs -
        targets``, each sample's terms times ``s_i``; gradient ``clip(d, -delta,
        delta)`` scaled alike."""
        diff = self._residual("huber", outputs, targets, sample_weight)
        size = self.xp.abs(diff)
        values = self.xp.where(
            size < delta, 0.5 * (diff * diff), delta * (size - 0.5 * delta)
        )
        grads = self.xp.clip(diff, -delta, delta)
        return _weighted_mean(values, grads, sample_weight)

    def gaussian_nll(
        self, outputs, targets, sample_weight=None, full: bool = False, eps=1e-6
    ):
        """Gaussian negative log-likelihood with a predicted mean and log-variance per
        target, and its gradient: PyTorch's ``GaussianNLLLoss(full, eps)`` with
        ``var = exp(log_var)``, each sample's terms times ``s_i``.

        ``loss = sum_i s_i sum_j 0.5 (v_ij + (mu_ij - y_ij)^2 exp(-v_ij)) / y.size``
        (+ ``0.5 log(2 pi)`` per term when ``full``), ``v = max(log_var, log(eps))``:
        the clamp (torch clamps ``var`` at ``eps``) keeps ``exp(-v)`` finite, and the
        gradient at the clamped value passes straight through it. ``dmu = s_i r /
        size``, ``dlog_var = s_i (0.5 - 0.5 (mu - y) r) / size``, ``r = (mu - y)
        exp(-v)``.

        Shape: outputs ``(batch, 2k)`` = ``[mean (k) | log_var (k)]``, targets
        ``(batch, k)``, sample_weight ``(batch,)``.
        """
        k = targets.shape[-1]
        _check_width("gaussian_nll", outputs, targets, 2 * k, sample_weight)
        xp = self.xp
        mean = outputs[:, :k]
        log_var = xp.maximum(outputs[:, k:], float(np.log(eps)))
        diff = mean - targets
        r = diff * xp.exp(-log_var)
        values = 0.5 * (log_var + diff * r)
        if full:
            values = values + 0.5 * float(np.log(2 * np.pi))
        grads = xp.concatenate([r, 0.5 - 0.5 * (diff * r)], axis=1)
        return _weighted_mean(values, grads, sample_weight)

    def mixture_density_nll(
        self, outputs, targets, n_components: int, sample_weight=None, eps=1e-6
    ):
        """Negative log-likelihood of a mixture of ``K`` diagonal Gaussians (Bishop,
        "Mixture Density Networks", 1994) and its gradient, in one call.

        ``loss = -sum_i s_i log sum_k pi_ik N(y_i; mu_ik, diag(sigma_ik^2)) / batch``
        by log-sum-exp, ``pi_i = softmax(a_i)``, ``sigma = exp(max(log_sigma,
        log(eps) / 2))`` (the variance floor ``eps`` as in :meth:`gaussian_nll`; the
        gradient passes straight through it). With responsibilities ``g_ik``:
        ``da = pi - g``, ``dmu = -g (y - mu) / sigma^2``, ``dlog_sigma = g (1 -
        ((y - mu) / sigma)^2)``, times ``s_i / batch``.

        Shape: outputs ``(batch, K (1 + 2d))`` = ``[a (K) | mu (K d) | log_sigma
        (K d)]``, each block of ``K d`` component-major (``mu[k, j]`` at ``K + k d +
        j``); targets ``(batch, d)``; sample_weight ``(batch,)``.
        """
        d, k = targets.shape[-1], n_components
        _check_width(
            "mixture_density_nll", outputs, targets, k * (1 + 2 * d), sample_weight
        )
        n = targets.shape[0]
        xp = self.xp
        mu = outputs[:, k : k * (1 + d)].reshape(n, k, d)
        floor = 0.5 * float(np.log(eps))
        log_sigma = xp.maximum(outputs[:, k * (1 + d) :], floor).reshape(n, k, d)
        inv_sigma = xp.exp(-log_sigma)
        zs = (targets[:, None, :] - mu) * inv_sigma
        log_pi = outputs[:, :k] - outputs[:, :k].max(axis=1, keepdims=True)
        log_pi -= xp.log(xp.exp(log_pi).sum(axis=1, keepdims=True))
        log_comp = log_pi - (0.5 * (zs * zs) + log_sigma).sum(axis=2)
        top = log_comp.max(axis=1, keepdims=True)
        resp = xp.exp(log_comp - top)
        total = resp.sum(axis=1, keepdims=True)
        resp /= total
        coef = (
            1 / max(n, 1)
            if sample_weight is None
            else sample_weight[:, None] / max(n, 1)
        )
        const = 0.5 * d * float(np.log(2 * np.pi))
        loss = ((const - top - xp.log(total)) * coef).sum()
        g = resp * coef
        dmu = (g[:, :, None] * zs) * -inv_sigma
        dlog_sigma = g[:, :, None] * (1 - zs * zs)
        grads = [
            xp.exp(log_pi) * coef - g,
            dmu.reshape(n, -1),
            dlog_sigma.reshape(n, -1),
        ]
        return loss, xp.concatenate(grads, axis=1)

    def _residual(self, op, outputs, targets, sample_weight):
        """``outputs - targets`` after the checks every elementwise loss shares."""
        _check_like(op, outputs, targets)
        _check_vector(op, "sample_weight", sample_weight, outputs.shape[0], outputs)
        return outputs - targets

    @staticmethod
    def _check_cross_entropy(logits, labels, sample_weight, class_weight) -> None:
        n = logits.shape[0]
        index = labels.shape == (n,) and labels.dtype.kind in "iu"
        rows = labels.shape == logits.shape and labels.dtype == logits.dtype
        if logits.ndim != 2 or not (index or rows):
            raise ValueError(
                f"softmax_cross_entropy needs integer labels of shape ({n},) or "
                f"{logits.dtype} probability rows of the logits' shape {logits.shape}, "
                f"got {labels.dtype} labels of shape {labels.shape}"
            )
        op = "softmax_cross_entropy"
        _check_vector(op, "sample_weight", sample_weight, n, logits)
        _check_vector(op, "class_weight", class_weight, logits.shape[1], logits)

    # ---------------------------------------------------------------- reductions
    def count_correct(self, outputs, targets, kind: str):
        """Number of correct predictions as a 0-d device array. ``kind`` is
        ``"multiclass"`` (argmax vs integer labels, or vs the argmax of probability
        rows), ``"binary"`` (logit > 0 vs target > 0.5, element-wise)."""
        if kind == "multiclass":
            return (outputs.argmax(axis=1) == _labels(targets)).sum()
        return ((outputs > 0) == (targets > 0.5)).sum()

    def count_top_k(self, outputs, targets, k: int):
        """Rows whose label's score is beaten by fewer than ``k`` other scores (ties
        count for the label, as TensorFlow's ``in_top_k``), as a 0-d device array.
        Shape: outputs ``(batch, C)``, targets labels ``(batch,)`` or rows."""
        labels = _labels(targets)
        picked = self.xp.take_along_axis(outputs, labels[:, None], axis=1)
        return ((outputs > picked).sum(axis=1) < k).sum()

    def class_counts(self, outputs, targets, kind: str):
        """Per class, as one int64 device array ``(3 * C,)``: ``[true positives |
        predicted | actual]``. ``"multiclass"``: argmax vs labels, ``C`` classes;
        ``"binary"``: per output column, logit > 0 vs target > 0.5."""
        xp = self.xp
        if kind == "binary":
            pred, true = outputs > 0, targets > 0.5
            counts = [(pred & true).sum(axis=0), pred.sum(axis=0), true.sum(axis=0)]
            return xp.concatenate(counts).astype(xp.int64)
        c = outputs.shape[1]
        pred, true = outputs.argmax(axis=1), _labels(targets)
        hits = xp.where(pred == true, true, c)  # misses land in an extra bin
        counts = [
            xp.bincount(hits, minlength=c + 1)[:c],
            xp.bincount(pred, minlength=c),
            xp.bincount(true, minlength=c),
        ]
        return xp.concatenate(counts).astype(xp.int64)

    def r2_sums(self, outputs, targets, center):
        """Per output column, in float64: ``[sum (y - p)^2, sum (y - c), sum (y -
        c)^2]`` as a ``(3, k)`` device array. ``center`` ``(k,)`` is any fixed shift
        (e.g. the first batch's mean): summed over batches, it gives the total sum of
        squares ``S2 - S1^2 / n`` without cancellation."""
        xp = self.xp
        y = targets.astype(xp.float64)
        res, dev = y - outputs, y - center
        return xp.stack([(res * res).sum(0), dev.sum(0), (dev * dev).sum(0)])

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

    def rmsprop_update_(
        self, param, grad, square_avg, grad_avg, momentum_buf, **hyper
    ) -> None:
        """One ``torch.optim.RMSprop`` step in place (:class:`~gpunn.optim.RMSprop`);
        ``grad_avg`` / ``momentum_buf`` are None unless centered / with momentum.

        Keywords: lr, alpha, eps, weight_decay, momentum, centered, maximize.
        """
        arrays = (param, grad, square_avg, grad_avg, momentum_buf)
        names = ("param", "grad", "square_avg", "grad_avg", "momentum_buf")
        self._check_flat(names, arrays)
        self._foreach_block(updates.rmsprop_, arrays, hyper)

    def adagrad_update_(self, param, grad, state_sum, **hyper) -> None:
        """One ``torch.optim.Adagrad`` step in place (:class:`~gpunn.optim.Adagrad`).

        Keywords: clr (``lr / (1 + (t - 1) * lr_decay)``), eps, weight_decay, maximize.
        """
        arrays = (param, grad, state_sum)
        self._check_flat(("param", "grad", "state_sum"), arrays)
        self._foreach_block(updates.adagrad_, arrays, hyper)

    def adadelta_update_(self, param, grad, square_avg, acc_delta, **hyper) -> None:
        """One ``torch.optim.Adadelta`` step in place (:class:`~gpunn.optim.Adadelta`).

        Keywords: lr, rho, eps, weight_decay, maximize.
        """
        arrays = (param, grad, square_avg, acc_delta)
        self._check_flat(("param", "grad", "square_avg", "acc_delta"), arrays)
        self._foreach_block(updates.adadelta_, arrays, hyper)

    def adamax_update_(self, param, grad, exp_avg, exp_inf, **hyper) -> None:
        """One ``torch.optim.Adamax`` step in place (:class:`~gpunn.optim.Adamax`).

        Keywords: beta1, beta2, eps, weight_decay, maximize, clr (``lr / (1 - b1**t)``).
        """
        arrays = (param, grad, exp_avg, exp_inf)
        self._check_flat(("param", "grad", "exp_avg", "exp_inf"), arrays)
        self._foreach_block(updates.adamax_, arrays, hyper)

    def nadam_update_(self, param, grad, exp_avg, exp_avg_sq, **hyper) -> None:
        """One ``torch.optim.NAdam`` step in place (:class:`~gpunn.optim.NAdam`).

        Keywords: lr, beta1, beta2, eps, weight_decay, decoupled, maximize,
        bias_correction2, grad_coef, avg_coef (host scalars, see ``updates.nadam_``).
        """
        arrays = (param, grad, exp_avg, exp_avg_sq)
        self._check_flat(("param", "grad", "exp_avg", "exp_avg_sq"), arrays)
        self._foreach_block(updates.nadam_, arrays, hyper)

    def segment_norms(self, flat, starts):
        """Per-tensor L2 norms of a flat arena buffer in one pass: ``out[s] =
        ||flat[starts[s]:starts[s + 1]]||`` (the last segment runs to the end).

        Shape: flat ``(n,)``, starts ``(n_segments,)`` increasing integers < n ->
        ``(n_segments,)`` of flat's dtype. One segmented sum (``add.reduceat``, also in
        CuPy), several times faster than ``bincount`` with weights on the CPU.
        """
        return self.xp.sqrt(self.xp.add.reduceat(flat * flat, starts))

    def trust_ratio(self, w_norm, u_norm, coefficient=1.0, weight_decay=0.0, eps=0.0):
        """Layer-wise trust ratio ``coefficient * ||w|| / (||u|| + weight_decay *
        ||w|| + eps)``, and 1 where ``||w||`` or ``||u||`` is 0 (LARS, LAMB).

        Shape: norms ``(n_tensors,)`` (weight_decay a float or alike) -> alike.
        """
        xp = self.xp
        ok = (w_norm > 0) & (u_norm > 0)
        denom = xp.where(ok, u_norm + weight_decay * w_norm + eps, 1)
        return xp.where(ok, coefficient * w_norm / denom, 1).astype(w_norm.dtype)

    def lars_update_(
        self,
        param,
        grad,
        momentum_buf,
        segment_ids,
        starts,
        adapt,
        *,
        weight_decay,
        trust_coefficient,
        eps,
        **hyper,
    ) -> None:
        """One LARS step in place (:class:`~gpunn.optim.LARS`): per-tensor norms, the
        trust ratio, then the elementwise momentum step. The tensors: ``segment_ids``
        ``(n,)`` (each element's tensor), ``starts`` ``(n_tensors,)`` (their offsets, as
        :meth:`segment_norms`), ``adapt`` ``(n_tensors,)`` 1 for tensors that get the
        trust ratio and weight decay, 0 for the others (None: all do).

        Keywords: lr, momentum, maximize, first_step (and the ones named above).
        """
        arrays = (param, grad, momentum_buf)
        self._check_flat(("param", "grad", "momentum_buf"), arrays)
        self._check_segments(param, segment_ids, starts, adapt)
        decay = weight_decay if adapt is None else weight_decay * adapt
        w_norm = self.segment_norms(param, starts)
        g_norm = self.segment_norms(grad, starts)
        ratio = self.trust_ratio(w_norm, g_norm, trust_coefficient, decay, eps)
        ratio = self._adapted(ratio, adapt)
        hyper.update(ratio=ratio, weight_decay=weight_decay, adapt=adapt)
        self._foreach_block(updates.lars_, arrays + (segment_ids,), hyper)

    def lamb_update_(
        self,
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        segment_ids,
        starts,
        adapt,
        *,
        lr,
        **hyper,
    ) -> None:
        """One LAMB step in place (:class:`~gpunn.optim.LAMB`): the moments and the
        direction ``r`` (elementwise), the per-tensor trust ratio ``||w|| / ||r||``,
        then ``p -= lr * ratio * r``. The tensors as in :meth:`lars_update_`.

        Keywords: beta1, beta2, eps, weight_decay, maximize, bias_correction1,
        bias_correction2.
        """
        arrays = (param, grad, exp_avg, exp_avg_sq)
        self._check_flat(("param", "grad", "exp_avg", "exp_avg_sq"), arrays)
        self._check_segments(param, segment_ids, starts, adapt)
        direction = self.xp.empty_like(param)
        hyper.update(adapt=adapt)
        arrays += (direction, segment_ids)
        self._foreach_block(updates.lamb_direction_, arrays, hyper)
        w_norm = self.segment_norms(param, starts)
        ratio = self.trust_ratio(w_norm, self.segment_norms(direction, starts))
        hyper = {"ratio": self._adapted(ratio, adapt), "lr": lr}
        self._foreach_block(updates.lamb_apply_, (param, direction, segment_ids), hyper)

    def _adapted(self, ratio, adapt):
        """The trust ratio where ``adapt`` is set (everywhere when None), else 1."""
        if adapt is None:
            return ratio
        return self.xp.where(adapt > 0, ratio, 1).astype(ratio.dtype, copy=False)

    def global_norm(self, flat):
        """``sqrt(sum(flat**2))``: one reduction, a 0-d array of flat's dtype."""
        xp = self.xp
        return xp.asarray(xp.sqrt(xp.dot(flat, flat)))

    def clip_by_norm_(self, flat, max_norm: float):
        """Scales ``flat`` in place by ``min(1, max_norm / (norm + 1e-6))``, as
        ``torch.nn.utils.clip_grad_norm_``, without a host sync; returns the pre-clip
        norm (0-d)."""
        norm = self.global_norm(flat)
        flat *= self.xp.minimum(max_norm / (norm + 1e-6), 1.0)
        return norm

    def clip_by_value_(self, flat, value: float) -> None:
        """Clamps ``flat`` to ``[-value, value]`` in place (NaN stays NaN)."""
        self.xp.clip(flat, -value, value, out=flat)

    @staticmethod
    def _check_segments(param, segment_ids, starts, adapt) -> None:
        """Raises ValueError unless ``segment_ids`` is an integer array of param's
        shape, ``starts`` 1-D integers and ``adapt`` None or of param's dtype, one per
        start."""
        if segment_ids.dtype.kind not in "iu" or segment_ids.shape != param.shape:
            raise ValueError(
                f"segment_ids must be integers of shape {param.shape}, got "
                f"{segment_ids.dtype} of shape {segment_ids.shape}"
            )
        if starts.dtype.kind not in "iu" or starts.ndim != 1:
            raise ValueError(
                f"starts must be 1-D integers, got {starts.dtype} {starts.shape}"
            )
        if adapt is not None and (
            adapt.shape != starts.shape or adapt.dtype != param.dtype
        ):
            raise ValueError(
                f"adapt must be a {param.dtype} array of shape {starts.shape} (one "
                f"entry per tensor), got {adapt.dtype} of shape {adapt.shape}"
            )

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


def _labels(targets):
    """Class indices of multiclass targets: labels as they are, rows by argmax."""
    return targets if targets.ndim == 1 else targets.argmax(axis=1)


def _column(a):
    """``a[:, None]`` for a per-sample vector; scalars and 0-d arrays as they are."""
    return a[:, None] if getattr(a, "ndim", 0) == 1 else a


def _weighted_mean(values, grads, sample_weight, factor=1):
    """``sum_i s_i sum_j values_ij / values.size`` (Keras' ``sum_over_batch_size``
    over all elements) and ``grads`` times ``factor s_i / values.size``."""
    scale = 1 / max(values.size, 1)
    if sample_weight is None:
        return values.sum() * scale, grads * (factor * scale)
    w = sample_weight[:, None] * scale
    return (values * w).sum(), grads * (w * factor)


def _check_vector(op: str, name: str, v, size: int, like, *other_sizes) -> None:
    """``v`` is None or 1-D with ``size`` (or one of ``other_sizes``) entries of
    ``like``'s dtype."""
    if v is None:
        return
    if v.ndim != 1 or v.shape[0] not in (size, *other_sizes) or v.dtype != like.dtype:
        raise ValueError(
            f"{op} needs {name} of shape ({size},) and dtype {like.dtype}, got shape "
            f"{v.shape} and dtype {v.dtype}"
        )


def _check_width(op: str, outputs, targets, width: int, sample_weight) -> None:
    """Targets ``(batch, d)`` and outputs ``(batch, width)`` of one float dtype."""
    n = targets.shape[0] if targets.ndim else 0
    if (
        targets.ndim != 2
        or outputs.shape != (n, width)
        or targets.dtype != outputs.dtype
    ):
        raise ValueError(
            f"{op} needs outputs of shape ({n}, {width}) and targets (batch, d) of one "
            f"dtype, got outputs of shape {outputs.shape} and dtype {outputs.dtype}, "
            f"targets of shape {targets.shape} and dtype {targets.dtype}"
        )
    _check_vector(op, "sample_weight", sample_weight, n, outputs)
