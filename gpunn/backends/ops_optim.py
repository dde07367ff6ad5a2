"""Optimizer ops of the reference backend: fused updates over flat arena buffers,
per-tensor norms and trust ratios, and gradient clipping.

Mixed into :class:`~gpunn.backends.numpy_backend.NumpyBackend` (see its module for the
conventions). The elementwise update formulas live in :mod:`gpunn.backends.updates`;
these methods check the arrays, compute what needs a reduction, and run the update
through ``self._foreach_block``. Every ``*_update_`` writes its arrays in place.
With ``param_copy`` (mixed precision: the arena's 16-bit copy of the parameters) an
update also writes the updated parameters, rounded, into it; the GPU kernels do that
in the same pass.
"""

from __future__ import annotations

import numpy as np

from gpunn.backends import updates


class OptimOps:
    """The optimizer steps and clipping; needs ``self.xp``, ``self._check_flat`` and
    ``self._foreach_block``."""

    def sgd_update_(
        self, param, grad, momentum_buf, *, param_copy=None, **hyper
    ) -> None:
        """One ``torch.optim.SGD`` step over flat arrays, in place.

        ``g = -grad if maximize else grad; g += weight_decay * p``; with momentum
        ``buf = g`` on the first step else ``buf = momentum * buf + (1 - dampening) * g``,
        then ``g = g + momentum * buf`` (Nesterov) or ``g = buf``; ``p -= lr * g``.

        Keywords: lr, momentum, dampening, nesterov, weight_decay, maximize, first_step.
        """
        arrays = (param, grad, momentum_buf)
        self._check_flat(("param", "grad", "momentum_buf"), arrays)
        self._check_param_copy(param, param_copy)
        self._foreach_block(updates.sgd_, arrays, hyper)
        self._write_param_copy(param_copy, param)

    def adam_update_(
        self,
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        max_exp_avg_sq=None,
        *,
        param_copy=None,
        **hyper,
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
        self._check_param_copy(param, param_copy)
        self._foreach_block(updates.adam_, arrays, hyper)
        self._write_param_copy(param_copy, param)

    def rmsprop_update_(
        self,
        param,
        grad,
        square_avg,
        grad_avg,
        momentum_buf,
        *,
        param_copy=None,
        **hyper,
    ) -> None:
        """One ``torch.optim.RMSprop`` step in place (:class:`~gpunn.optim.RMSprop`);
        ``grad_avg`` / ``momentum_buf`` are None unless centered / with momentum.

        Keywords: lr, alpha, eps, weight_decay, momentum, centered, maximize.
        """
        arrays = (param, grad, square_avg, grad_avg, momentum_buf)
        names = ("param", "grad", "square_avg", "grad_avg", "momentum_buf")
        self._check_flat(names, arrays)
        self._check_param_copy(param, param_copy)
        self._foreach_block(updates.rmsprop_, arrays, hyper)
        self._write_param_copy(param_copy, param)

    def adagrad_update_(
        self, param, grad, state_sum, *, param_copy=None, **hyper
    ) -> None:
        """One ``torch.optim.Adagrad`` step in place (:class:`~gpunn.optim.Adagrad`).

        Keywords: clr (``lr / (1 + (t - 1) * lr_decay)``), eps, weight_decay, maximize.
        """
        arrays = (param, grad, state_sum)
        self._check_flat(("param", "grad", "state_sum"), arrays)
        self._check_param_copy(param, param_copy)
        self._foreach_block(updates.adagrad_, arrays, hyper)
        self._write_param_copy(param_copy, param)

    def adadelta_update_(
        self, param, grad, square_avg, acc_delta, *, param_copy=None, **hyper
    ) -> None:
        """One ``torch.optim.Adadelta`` step in place (:class:`~gpunn.optim.Adadelta`).

        Keywords: lr, rho, eps, weight_decay, maximize.
        """
        arrays = (param, grad, square_avg, acc_delta)
        self._check_flat(("param", "grad", "square_avg", "acc_delta"), arrays)
        self._check_param_copy(param, param_copy)
        self._foreach_block(updates.adadelta_, arrays, hyper)
        self._write_param_copy(param_copy, param)

    def adamax_update_(
        self, param, grad, exp_avg, exp_inf, *, param_copy=None, **hyper
    ) -> None:
        """One ``torch.optim.Adamax`` step in place (:class:`~gpunn.optim.Adamax`).

        Keywords: beta1, beta2, eps, weight_decay, maximize, clr (``lr / (1 - b1**t)``).
        """
        arrays = (param, grad, exp_avg, exp_inf)
        self._check_flat(("param", "grad", "exp_avg", "exp_inf"), arrays)
        self._check_param_copy(param, param_copy)
        self._foreach_block(updates.adamax_, arrays, hyper)
        self._write_param_copy(param_copy, param)

    def nadam_update_(
        self, param, grad, exp_avg, exp_avg_sq, *, param_copy=None, **hyper
    ) -> None:
        """One ``torch.optim.NAdam`` step in place (:class:`~gpunn.optim.NAdam`).

        Keywords: lr, beta1, beta2, eps, weight_decay, decoupled, maximize,
        bias_correction2, grad_coef, avg_coef (host scalars, see ``updates.nadam_``).
        """
        arrays = (param, grad, exp_avg, exp_avg_sq)
        self._check_flat(("param", "grad", "exp_avg", "exp_avg_sq"), arrays)
        self._check_param_copy(param, param_copy)
        self._foreach_block(updates.nadam_, arrays, hyper)
        self._write_param_copy(param_copy, param)

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
        param_copy=None,
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
        self._check_param_copy(param, param_copy)
        decay = weight_decay if adapt is None else weight_decay * adapt
        w_norm = self.segment_norms(param, starts)
        g_norm = self.segment_norms(grad, starts)
        ratio = self.trust_ratio(w_norm, g_norm, trust_coefficient, decay, eps)
        ratio = self._adapted(ratio, adapt)
        hyper.update(ratio=ratio, weight_decay=weight_decay, adapt=adapt)
        self._foreach_block(updates.lars_, arrays + (segment_ids,), hyper)
        self._write_param_copy(param_copy, param)

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
        param_copy=None,
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
        self._check_param_copy(param, param_copy)
        direction = self.xp.empty_like(param)
        hyper.update(adapt=adapt)
        arrays += (direction, segment_ids)
        self._foreach_block(updates.lamb_direction_, arrays, hyper)
        w_norm = self.segment_norms(param, starts)
        ratio = self.trust_ratio(w_norm, self.segment_norms(direction, starts))
        hyper = {"ratio": self._adapted(ratio, adapt), "lr": lr}
        self._foreach_block(updates.lamb_apply_, (param, direction, segment_ids), hyper)
        self._write_param_copy(param_copy, param)

    @staticmethod
    def _check_param_copy(param, param_copy) -> None:
        """ValueError, before anything is written, unless ``param_copy`` is None or a
        contiguous 1-D float16/bfloat16 array of param's shape."""
        if param_copy is None:
            return
        dtype = np.dtype(param_copy.dtype)
        if not (dtype == np.float16 or dtype.name == "bfloat16"):
            raise ValueError(
                f"param_copy must be float16 or bfloat16, got {param_copy.dtype}"
            )
        if param_copy.shape != param.shape or not param_copy.flags.c_contiguous:
            raise ValueError(
                f"param_copy must be a contiguous 1-D array of shape {param.shape}, "
                f"got shape {param_copy.shape}"
            )

    @staticmethod
    def _write_param_copy(param_copy, param) -> None:
        if param_copy is not None:
            with np.errstate(over="ignore"):  # past the 16-bit range: inf
                param_copy[...] = param

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

    # ---------------------------------------------------------------- faults
    def step_is_finite(self, loss, grads):
        """``isfinite(loss + 0 * sum(grads**2))``: whether a training step may
        update, as a 0-d bool device array (no host sync: the caller reads it once).

        One reduction over the flat gradient: a NaN or infinity in any gradient
        makes the sum of squares non-finite, and ``0 *`` it NaN. A sum of squares
        overflowing the dtype also counts as non-finite: it bounds every square, so
        a finite gradient whose square would make a second moment (Adam, RMSprop,
        Adagrad) infinite is refused too. Any accumulation order gives the same
        verdict: the terms are >= 0, so a partial sum never exceeds the total (a
        kernel may as well square the global norm rounded to the dtype). Shape: loss
        ``()`` (or a Python float), grads ``(n,)``.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf is the answer
            return self.xp.isfinite(loss + 0 * self.xp.dot(grads, grads))

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
