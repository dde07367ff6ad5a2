"""Kernel-backed ops: fused optimizer updates over the flat arena
(``kernels/optim_updates.cu``), one launch per step for all parameters, and the
norms, clipping and finiteness check of the gradient arena (``kernels/optim_norms.cu``).

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`). Each override
checks its arrays exactly as the reference does (``self._check_flat``, so bad input
raises the same errors), derives the host scalars the reference derives, casts them to
the arena's type and launches one kernel. Under mixed precision the update also
writes the arena's 16-bit copy of the parameters (``param_copy``) in the same pass.

LARS and LAMB need per-tensor norms between their elementwise halves: three launches
each (LAMB: moments and direction with the per-chunk sums of squares, the trust
ratios, the step), over the chunk table of :mod:`gpunn.backends.segments`. Every
reduction writes per-block partial sums and adds them in a fixed order in a second
kernel, so the same input gives bitwise the same result run to run. Cases the kernels
do not cover run the reference: arrays that are not contiguous 1-D float32/float64,
``starts`` that are not strictly increasing offsets (or, for LARS/LAMB, do not start
at 0), an empty arena.
"""

from __future__ import annotations

import numpy as np

from gpunn.backends.kernels import BLOCK, ctype, scalar
from gpunn.backends.segments import TableCache

FILE = "optim_updates.cu"
NORMS = "optim_norms.cu"
CLIP_EPS = 1e-6  # added to the norm by clip_by_norm_, as torch's clip_grad_norm_
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _copy_type(param_copy) -> str:
    """The C type of an update kernel's 16-bit parameter copy (``void``: none)."""
    return "void" if param_copy is None else ctype(param_copy.dtype)


class GpuOptimOps:
    """Overrides of the reference optimizer updates, norms and clipping that run
    fused kernels."""

    def _update(self, name: str, arrays, scalars, flags, param_copy=None) -> None:
        """Launches ``name<T, C>`` over the arena: ``arrays`` (None entries replaced
        by ``param``, which a disabled option's kernel branch never touches), ``n``,
        ``scalars`` cast to the arena's dtype, ``flags`` as C ints, then the 16-bit
        ``param_copy`` the kernel also writes (C its type; ``void`` without one)."""
        self._check_param_copy(arrays[0], param_copy)
        param = arrays[0]
        dtype = param.dtype.type
        args = [param if a is None else a for a in arrays]
        args.append(np.int64(param.size))
        args += [dtype(s) for s in scalars]
        args += [np.int32(bool(f)) for f in flags]
        args.append(param if param_copy is None else param_copy)
        name = f"{name}<{ctype(param.dtype)}, {_copy_type(param_copy)}>"
        self.kernels.launch(FILE, name, param.size, args)

    def sgd_update_(
        self, param, grad, momentum_buf, *, param_copy=None, **hyper
    ) -> None:
        self._check_flat(("param", "grad", "momentum_buf"), (param, grad, momentum_buf))
        h = hyper
        if momentum_buf is None and h.get("momentum", 0) != 0:  # the reference raises
            return super().sgd_update_(
                param, grad, momentum_buf, param_copy=param_copy, **hyper
            )
        scalars = (h["lr"], h["momentum"], 1 - h["dampening"], h["weight_decay"])
        flags = (h["nesterov"], h["maximize"], h["first_step"])
        arrays = (param, grad, momentum_buf)
        self._update("sgd_update", arrays, scalars, flags, param_copy)

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
        arrays = (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
        names = ("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        self._check_flat(names, arrays)
        h = hyper
        scalars = (
            *_decay_and_moments(h),
            h["eps"],
            h["step_size"],
            h["bias_correction2_sqrt"],
        )
        flags = (h["decoupled"], h["maximize"], max_exp_avg_sq is not None)
        self._update("adam_update", arrays, scalars, flags, param_copy)

    def nadam_update_(
        self, param, grad, exp_avg, exp_avg_sq, *, param_copy=None, **hyper
    ) -> None:
        arrays = (param, grad, exp_avg, exp_avg_sq)
        self._check_flat(("param", "grad", "exp_avg", "exp_avg_sq"), arrays)
        h = hyper
        scalars = (
            *_decay_and_moments(h),
            h["eps"],
            h["bias_correction2"],
            h["grad_coef"],
            h["avg_coef"],
        )
        flags = (h["decoupled"], h["maximize"])
        self._update("nadam_update", arrays, scalars, flags, param_copy)

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
        arrays = (param, grad, square_avg, grad_avg, momentum_buf)
        names = ("param", "grad", "square_avg", "grad_avg", "momentum_buf")
        self._check_flat(names, arrays)
        h = hyper
        if (grad_avg is None and h.get("centered")) or (
            momentum_buf is None and h.get("momentum", 0) > 0
        ):  # a state buffer the options need is missing: the reference raises
            return super().rmsprop_update_(
                param, grad, *arrays[2:], param_copy=param_copy, **hyper
            )
        w = 1 - h["alpha"]
        scalars = (h["lr"], h["alpha"], w, w, 1 - w, h["eps"], h["weight_decay"])
        scalars += (h["momentum"],)
        flags = (h["maximize"], h["centered"])
        self._update("rmsprop_update", arrays, scalars, flags, param_copy)

    def adagrad_update_(
        self, param, grad, state_sum, *, param_copy=None, **hyper
    ) -> None:
        self._check_flat(("param", "grad", "state_sum"), (param, grad, state_sum))
        h = hyper
        scalars = (h["clr"], h["eps"], h["weight_decay"])
        arrays, flags = (param, grad, state_sum), (h["maximize"],)
        self._update("adagrad_update", arrays, scalars, flags, param_copy)

    def adadelta_update_(
        self, param, grad, square_avg, acc_delta, *, param_copy=None, **hyper
    ) -> None:
        arrays = (param, grad, square_avg, acc_delta)
        self._check_flat(("param", "grad", "square_avg", "acc_delta"), arrays)
        h = hyper
        scalars = (h["lr"], h["rho"], 1 - h["rho"], h["eps"], h["weight_decay"])
        flags = (h["maximize"],)
        self._update("adadelta_update", arrays, scalars, flags, param_copy)

    def adamax_update_(
        self, param, grad, exp_avg, exp_inf, *, param_copy=None, **hyper
    ) -> None:
        arrays = (param, grad, exp_avg, exp_inf)
        self._check_flat(("param", "grad", "exp_avg", "exp_inf"), arrays)
        h, w1 = hyper, 1 - hyper["beta1"]
        scalars = (w1, 1 - w1, h["beta2"], h["eps"], h["weight_decay"], h["clr"])
        flags = (h["maximize"],)
        self._update("adamax_update", arrays, scalars, flags, param_copy)

    # ---------------------------------------------------------------- LARS, LAMB
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
        self._check_flat(("param", "grad", "momentum_buf"), (param, grad, momentum_buf))
        self._check_param_copy(param, param_copy)
        self._check_segments(param, segment_ids, starts, adapt)
        lr, momentum, maximize, first_step = _lars_keywords(**hyper)
        table = self._segment_table(param, starts, whole=True)
        if table is None or (momentum_buf is None and momentum != 0):
            return super().lars_update_(
                *(param, grad, momentum_buf, segment_ids, starts, adapt),
                weight_decay=weight_decay,
                trust_coefficient=trust_coefficient,
                eps=eps,
                param_copy=param_copy,
                **hyper,
            )
        partials = self._segment_sums(table, param, grad)
        ratio = self._trust_ratio(
            table, partials, adapt, param.dtype, trust_coefficient, weight_decay, eps
        )
        arrays = (param, grad, momentum_buf, ratio, adapt)
        scalars, flags = (lr, momentum, weight_decay), (maximize, first_step)
        copy = (param if param_copy is None else param_copy,)
        self._segmented(
            "lars_update", arrays, table, scalars, flags, *copy, copy=param_copy
        )

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
        arrays = (param, grad, exp_avg, exp_avg_sq)
        self._check_flat(("param", "grad", "exp_avg", "exp_avg_sq"), arrays)
        self._check_segments(param, segment_ids, starts, adapt)
        self._check_param_copy(param, param_copy)
        scalars, maximize = _lamb_scalars(**hyper)
        table = self._segment_table(param, starts, whole=True)
        if table is None:
            return super().lamb_update_(
                *arrays,
                segment_ids,
                starts,
                adapt,
                lr=lr,
                param_copy=param_copy,
                **hyper,
            )
        direction = self.xp.empty_like(param)
        partials = self.xp.empty(2 * table.n_entries, np.float64)
        arrays += (direction, adapt)
        self._segmented("lamb_direction", arrays, table, scalars, (maximize,), partials)
        ratio = self._trust_ratio(table, partials, adapt, param.dtype)
        copy = (param if param_copy is None else param_copy,)
        arrays = (param, direction, ratio)
        self._segmented("lamb_apply", arrays, table, (lr,), (), *copy, copy=param_copy)

    def segment_norms(self, flat, starts):
        table = self._segment_table(flat, starts)
        if table is None:
            return super().segment_norms(flat, starts)
        partials = self._segment_sums(table, flat)
        out = self.xp.empty(table.n_segments, flat.dtype)
        args = (partials, table.seg_entry, np.int64(table.n_segments), out)
        name = f"segment_norms_finish<{ctype(flat.dtype)}>"
        self.kernels.launch(NORMS, name, 32 * table.n_segments, args)
        return out

    def _segment_table(self, flat, starts, whole: bool = False):
        """The chunk table of ``starts`` over ``flat`` (cached), or None where the
        reference must run; ``whole``: the segments must cover all of ``flat``."""
        kind = getattr(getattr(starts, "dtype", None), "kind", "")
        if not _kernel_flat(flat) or kind not in "iu" or starts.ndim != 1:
            return None
        cache = vars(self).setdefault("_segment_tables", TableCache())
        table = cache.get(self, starts, flat.size)
        return None if table is None or (whole and not table.whole) else table

    def _segment_sums(self, table, a, b=None):
        """Per chunk: the sum of ``a**2`` (then of ``b**2``), float64 ``(2, E)``."""
        partials = self.xp.empty((1 if b is None else 2) * table.n_entries, np.float64)
        grid = min(table.n_entries, self.kernels.max_blocks)
        args = (a, b, table.entry_start, np.int64(table.n_entries), partials)
        name = f"segment_sumsq<{ctype(a.dtype)}>"
        self.kernels.launch_grid(NORMS, name, grid, BLOCK, args)
        return partials

    def _trust_ratio(self, table, partials, adapt, dtype, coef=1.0, wd=0.0, eps=0.0):
        """Per tensor: :meth:`trust_ratio` of the two norms in ``partials`` (1 where
        ``adapt`` is 0), as :meth:`_adapted` gives it."""
        ratio = self.xp.empty(table.n_segments, dtype)
        args = (partials, np.int64(table.n_entries), table.seg_entry)
        args += (np.int64(table.n_segments), adapt)
        args += tuple(scalar(dtype, v) for v in (coef, wd, eps)) + (ratio,)
        name = f"trust_ratio_finish<{ctype(dtype)}>"
        self.kernels.launch(NORMS, name, 32 * table.n_segments, args)
        return ratio

    def _segmented(
        self, name, arrays, table, scalars, flags, *tail, copy=False
    ) -> None:
        """Launches a chunk-table kernel of ``optim_updates.cu``: ``arrays`` (None
        passed as NULL), the table, ``scalars`` in the arena's type, ``flags``, then
        ``tail``. ``copy``: False for a kernel without a 16-bit copy parameter, else
        the copy (None for ``<T, void>``) that names the instantiation."""
        dtype = arrays[0].dtype
        args = [*arrays, table.entry_start, table.entry_seg, np.int64(table.n_entries)]
        args += [scalar(dtype, s) for s in scalars]
        args += [np.int32(bool(f)) for f in flags] + list(tail)
        grid = min(table.n_entries, self.kernels.max_blocks)
        types = ctype(dtype) if copy is False else f"{ctype(dtype)}, {_copy_type(copy)}"
        self.kernels.launch_grid(FILE, f"{name}<{types}>", grid, BLOCK, args)

    # ---------------------------------------------------------------- norms, clipping
    def global_norm(self, flat):
        if not _kernel_flat(flat):
            return super().global_norm(flat)
        return self._total(flat, square=True)

    def clip_by_norm_(self, flat, max_norm: float):
        if not _kernel_flat(flat):
            return super().clip_by_norm_(flat, max_norm)
        norm = self._total(flat, square=True)
        dtype, n = flat.dtype, np.int64(flat.size)
        args = (flat, n, norm, scalar(dtype, max_norm), scalar(dtype, CLIP_EPS))
        self.kernels.launch(NORMS, f"scale_by_norm<{ctype(dtype)}>", flat.size, args)
        return norm

    def clip_by_value_(self, flat, value: float) -> None:
        if not _kernel_flat(flat):
            return super().clip_by_value_(flat, value)
        dtype, n = flat.dtype, np.int64(flat.size)
        args = (flat, n, scalar(dtype, -value), scalar(dtype, value))
        self.kernels.launch(NORMS, f"clip_values<{ctype(dtype)}>", flat.size, args)

    def step_is_finite(self, loss, grads):
        """As the reference: ``isfinite(loss + 0 * sum(grads**2))``, here as the
        squared global norm: one reduction of the squares accumulated in float64, its
        square root rounded to the gradients' dtype, squared again in that dtype. So
        a NaN or infinity anywhere, and a sum of squares past the dtype's range (a
        finite gradient that would make a second moment infinite), are not finite."""
        if not _kernel_flat(grads):
            return super().step_is_finite(loss, grads)
        norm = self._total(grads, square=True)
        with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf is the answer
            return self.xp.isfinite(loss + 0 * (norm * norm))

    def _total(self, flat, square: bool):
        """``sum(flat**2)**0.5`` (``square``) or ``sum(flat)``: a 0-d array of flat's
        dtype from per-block float64 partials added in a fixed order."""
        grid, T = self.kernels.grid(flat.size), ctype(flat.dtype)
        partials = self.xp.empty(grid, np.float64)
        args = (flat, np.int64(flat.size), np.int32(square), partials)
        self.kernels.launch_grid(NORMS, f"sum_blocks<{T}>", grid, BLOCK, args)
        out = self.xp.empty((), flat.dtype)
        args = (partials, np.int64(grid), np.int32(square), out)
        self.kernels.launch_grid(NORMS, f"sum_finish<{T}>", 1, BLOCK, args)
        return out


def _kernel_flat(a) -> bool:
    """Whether the kernels take ``a``: a contiguous 1-D float32/float64 array."""
    return a.ndim == 1 and a.dtype in _FLOATS and a.flags.c_contiguous


def _lars_keywords(*, lr, momentum, maximize, first_step) -> tuple:
    """LARS's step keywords (a missing or unknown one: TypeError, as the reference)."""
    return lr, momentum, maximize, first_step


def _lamb_scalars(
    *, beta1, beta2, eps, weight_decay, maximize, bias_correction1, bias_correction2
):
    """``lamb_direction``'s scalars as the reference derives them, and ``maximize``."""
    w1 = 1 - beta1
    scalars = (w1, 1 - w1, beta2, 1 - beta2, eps, weight_decay)
    return scalars + (bias_correction1, bias_correction2), maximize


def _decay_and_moments(h: dict) -> tuple:
    """Adam's and NAdam's shared scalars, as the reference derives them:
    ``1 - lr * weight_decay``, ``weight_decay``, ``w = 1 - beta1``, ``1 - w``,
    ``beta2``, ``1 - beta2``."""
    w1 = 1 - h["beta1"]
    return (
        1 - h["lr"] * h["weight_decay"],
        h["weight_decay"],
        w1,
        1 - w1,
        h["beta2"],
        1 - h["beta2"],
    )
