"""Fused losses of the reference backend: each returns the loss and its gradient with
respect to the outputs in one call.

Mixed into :class:`~gpunn.backends.numpy_backend.NumpyBackend` (see its module for the
conventions), written once against ``self.xp``. A loss is a 0-d device array of the
outputs' dtype, so a training step never waits for the device just to read the loss.
"""

from __future__ import annotations

import numbers

import numpy as np


class LossOps:
    """The fused losses; needs ``self.xp`` and ``self.sigmoid``."""

    def softmax_cross_entropy(
        self,
        logits,
        labels,
        sample_weight=None,
        class_weight=None,
        label_smoothing: float = 0.0,
        temperature: float = 1.0,
        ignore_index: int | None = None,
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

        ``ignore_index`` (integer labels only): rows whose label equals it add nothing
        to the loss, get zero ``dlogits`` and leave ``D`` (the sum of ``w[y_i]``, or
        the count, over the kept rows), as PyTorch's ``ignore_index``; a batch with
        every row ignored gives loss 0 and zero ``dlogits`` (PyTorch: NaN).

        Shape: logits ``(batch, C)``; labels ``(batch,)`` integers in ``[0, C)`` or
        equal to ``ignore_index`` (the range is checked by the caller, once per
        dataset) or rows ``(batch, C)``; sample_weight ``(batch,)``, class_weight
        ``(C,)``; floats of the logits' dtype.
        Returns: ``(loss, dlogits)``, loss a 0-d array of the logits' dtype.
        """
        self._check_cross_entropy(
            logits, labels, sample_weight, class_weight, ignore_index
        )
        z = logits if temperature == 1 else logits / temperature
        shifted = z - z.max(axis=1, keepdims=True)
        dlogits = self.xp.exp(shifted)
        sums = dlogits.sum(axis=1, keepdims=True)
        options = (labels, sample_weight, class_weight, label_smoothing)
        if labels.ndim == 1:
            loss = self._ce_labels_(dlogits, shifted, sums, *options, ignore_index)
        else:
            loss = self._ce_rows_(dlogits, shifted, sums, *options)
        if temperature != 1:
            dlogits /= temperature
        return loss, dlogits

    def _ce_labels_(self, dlogits, shifted, sums, labels, sw, cw, ls, ignore=None):
        """Integer labels: turns ``dlogits = exp(shifted)`` into ``m p - q`` in place
        and returns the loss (see :meth:`softmax_cross_entropy`)."""
        xp, (n, c) = self.xp, shifted.shape
        rows = xp.arange(n)
        keep = None if ignore is None else labels != ignore
        if keep is not None:
            labels = xp.where(keep, labels, 0)  # any class: these rows weigh 0
        w = 1 if cw is None else cw[labels]
        if keep is None:
            coef = 1 / max(n, 1) if cw is None else 1 / w.sum()
        else:
            coef = _kept_coef(xp, keep, w, shifted.dtype)
        coef = coef if sw is None else sw * coef
        hard = coef * w * (1 - ls)
        log_sums = xp.log(sums)
        nll = _kept(xp, keep, log_sums[:, 0] - shifted[rows, labels])
        loss = (nll * hard).sum()
        mass = _column(hard)
        if ls:
            soft = _column(coef * (ls / c))
            w_all, total = (1, c) if cw is None else (cw, cw.sum())
            # sum_c w_c nll_ic = W lse_i - sum_c w_c shifted_ic: both terms >= 0
            spread = total * log_sums - (shifted * w_all).sum(axis=1, keepdims=True)
            loss = loss + (soft * _kept(xp, keep, spread)).sum()
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
        self._check_binary_cross_entropy(logits, targets, sample_weight, pos_weight)
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
    def _check_binary_cross_entropy(logits, targets, sample_weight, pos_weight):
        op = "binary_cross_entropy"
        _check_like(op, logits, targets)
        n, k = logits.shape
        _check_vector(op, "sample_weight", sample_weight, n, logits)
        _check_vector(op, "pos_weight", pos_weight, k, logits, 1)

    @staticmethod
    def _check_cross_entropy(
        logits, labels, sample_weight, class_weight, ignore_index=None
    ) -> None:
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
        if ignore_index is None:
            return
        if isinstance(ignore_index, bool) or not isinstance(
            ignore_index, numbers.Integral
        ):
            raise TypeError(
                f"{op} needs ignore_index None or an int, got {ignore_index!r}"
            )
        if labels.ndim != 1:
            raise ValueError(
                f"{op} takes ignore_index={ignore_index} with integer labels only, "
                f"got probability rows of shape {labels.shape}"
            )


def _check_like(op: str, outputs, targets) -> None:
    """A fused loss needs targets of the outputs' shape and dtype (no broadcasting)."""
    if targets.shape != outputs.shape or targets.dtype != outputs.dtype:
        raise ValueError(
            f"{op} needs targets of the outputs' shape {outputs.shape} and dtype "
            f"{outputs.dtype}, got shape {targets.shape} and dtype {targets.dtype}"
        )


def _kept_coef(xp, keep, w, dtype):
    """Per row ``1 / D`` on the kept rows and 0 on the ignored ones: ``D = sum_i
    w_i`` over the kept rows (their count when ``w`` is 1), 1 when none is kept."""
    kept = keep.astype(dtype)
    total = (kept if isinstance(w, int) else kept * w).sum()
    total = xp.where(keep.any(), total, 1)
    return xp.where(keep, 1 / total, 0)


def _kept(xp, keep, a):
    """``a`` (per row, ``(batch,)`` or ``(batch, 1)``) with ignored rows set to 0, so
    an infinite term of an ignored row does not turn into ``0 * inf``."""
    if keep is None:
        return a
    return xp.where(keep if a.ndim == 1 else keep[:, None], a, 0)


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
