"""Kernel-backed ops: fused optimizer updates over the flat arena
(``kernels/optim_updates.cu``), one launch per step for all parameters.

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`). Each override
checks its arrays exactly as the reference does (``self._check_flat``, so bad input
raises the same errors), derives the host scalars the reference derives, casts them to
the arena's type and launches one kernel. LARS and LAMB (per-tensor norms between
their elementwise halves), norms and clipping run the reference ops for now.
"""

from __future__ import annotations

import numpy as np

from gpunn.backends.kernels import ctype

FILE = "optim_updates.cu"


class GpuOptimOps:
    """Overrides of the reference optimizer updates that run one fused kernel."""

    def _update(self, name: str, arrays, scalars, flags) -> None:
        """Launches ``name<T>`` over the arena: ``arrays`` (None entries replaced by
        ``param``, which a disabled option's kernel branch never touches), ``n``,
        ``scalars`` cast to the arena's dtype, ``flags`` as C ints."""
        param = arrays[0]
        dtype = param.dtype.type
        args = [param if a is None else a for a in arrays]
        args.append(np.int64(param.size))
        args += [dtype(s) for s in scalars]
        args += [np.int32(bool(f)) for f in flags]
        self.kernels.launch(FILE, f"{name}<{ctype(param.dtype)}>", param.size, args)

    def sgd_update_(self, param, grad, momentum_buf, **hyper) -> None:
        self._check_flat(("param", "grad", "momentum_buf"), (param, grad, momentum_buf))
        h = hyper
        scalars = (h["lr"], h["momentum"], 1 - h["dampening"], h["weight_decay"])
        flags = (h["nesterov"], h["maximize"], h["first_step"])
        self._update("sgd_update", (param, grad, momentum_buf), scalars, flags)

    def adam_update_(
        self, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, **hyper
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
        self._update("adam_update", arrays, scalars, flags)

    def nadam_update_(self, param, grad, exp_avg, exp_avg_sq, **hyper) -> None:
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
        self._update("nadam_update", arrays, scalars, (h["decoupled"], h["maximize"]))

    def rmsprop_update_(
        self, param, grad, square_avg, grad_avg, momentum_buf, **hyper
    ) -> None:
        arrays = (param, grad, square_avg, grad_avg, momentum_buf)
        names = ("param", "grad", "square_avg", "grad_avg", "momentum_buf")
        self._check_flat(names, arrays)
        h, w = hyper, 1 - hyper["alpha"]
        scalars = (h["lr"], h["alpha"], w, w, 1 - w, h["eps"], h["weight_decay"])
        scalars += (h["momentum"],)
        flags = (h["maximize"], h["centered"])
        self._update("rmsprop_update", arrays, scalars, flags)

    def adagrad_update_(self, param, grad, state_sum, **hyper) -> None:
        self._check_flat(("param", "grad", "state_sum"), (param, grad, state_sum))
        h = hyper
        scalars = (h["clr"], h["eps"], h["weight_decay"])
        self._update(
            "adagrad_update", (param, grad, state_sum), scalars, (h["maximize"],)
        )

    def adadelta_update_(self, param, grad, square_avg, acc_delta, **hyper) -> None:
        arrays = (param, grad, square_avg, acc_delta)
        self._check_flat(("param", "grad", "square_avg", "acc_delta"), arrays)
        h = hyper
        scalars = (h["lr"], h["rho"], 1 - h["rho"], h["eps"], h["weight_decay"])
        self._update("adadelta_update", arrays, scalars, (h["maximize"],))

    def adamax_update_(self, param, grad, exp_avg, exp_inf, **hyper) -> None:
        arrays = (param, grad, exp_avg, exp_inf)
        self._check_flat(("param", "grad", "exp_avg", "exp_inf"), arrays)
        h, w1 = hyper, 1 - hyper["beta1"]
        scalars = (w1, 1 - w1, h["beta2"], h["eps"], h["weight_decay"], h["clr"])
        self._update("adamax_update", arrays, scalars, (h["maximize"],))


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
