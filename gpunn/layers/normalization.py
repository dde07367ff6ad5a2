"""Batch normalization, and the checks of non-trainable layer state.

A layer's non-trainable arrays (running statistics, fitted preprocessing statistics)
live outside the parameter arena, so optimizers never touch them; they are read and
restored through ``get_state`` / ``set_state`` as host arrays.
"""

from __future__ import annotations

import numpy as np

from gpunn.arena import ParamSpec
from gpunn.checks import check_bool, check_real
from gpunn.errors import ArgumentError, ArgumentTypeError
from gpunn.layers.base import Layer
from gpunn.precision import is_half


def check_state(layer: Layer, state, shapes: dict) -> dict:
    """Validates ``state`` for ``layer.set_state``: exactly the entries of ``shapes``,
    each a finite real array of that shape. Returns float64 host copies; raises
    ValueError (TypeError for non-numeric arrays) naming the entry otherwise."""
    kind = type(layer).__name__
    if not isinstance(state, dict) or set(state) != set(shapes):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ArgumentError(
            f"{kind} state needs the entries {sorted(shapes)}, got {got}"
        )
    out = {}
    for name, shape in shapes.items():
        value = np.asarray(state[name])
        if value.dtype.kind not in "biuf":
            raise ArgumentTypeError(
                f"{kind} state {name!r} must be real, got {value.dtype}"
            )
        if value.shape != tuple(shape):
            raise ArgumentError(
                f"{kind} state {name!r} must have shape {tuple(shape)}, "
                f"got {value.shape}"
            )
        value = value.astype(np.float64)
        if not np.isfinite(value).all():
            raise ArgumentError(f"{kind} state {name!r} contains NaN or infinity")
        out[name] = value
    return out


def state_width(layer: Layer, state, name: str) -> int:
    """Length of the 1-D entry ``name`` of ``state``, for a layer given state before
    it knows its input width; ValueError when the entry is missing or not 1-D."""
    shape = np.shape(state[name]) if isinstance(state, dict) and name in state else None
    if shape is None or len(shape) != 1:
        got = "no such entry" if shape is None else f"shape {shape}"
        raise ArgumentError(
            f"{type(layer).__name__} state needs a 1-D entry {name!r}, got {got}"
        )
    return shape[0]


class BatchNorm(Layer):
    """Batch normalization over the features of ``(batch, n)`` inputs:
    ``y = gamma * (x - E[x]) / sqrt(Var[x] + eps) + beta``.

    PyTorch ``BatchNorm1d`` semantics (Ioffe & Szegedy, 2015, "Batch Normalization:
    Accelerating Deep Network Training by Reducing Internal Covariate Shift"): in
    training the batch mean and the *biased* batch variance normalize, and the running
    statistics are updated with the *unbiased* variance,
    ``running = (1 - momentum) * running + momentum * batch_statistic``; in eval the
    running statistics normalize. The backward pass differentiates through the batch
    mean and variance.

    ``gamma`` (init 1) and ``beta`` (init 0) are trainable, in that order in
    ``model.get_weights()``. ``running_mean`` (init 0), ``running_var`` (init 1) and
    ``num_batches_tracked`` are not: they are read and restored with
    :meth:`get_state` / :meth:`set_state`.

    Args:
        momentum: weight of the batch statistic in the running average, in
            ``[0, 1]``; None uses the cumulative average ``1 / num_batches_tracked``
            (as torch). Default: 0.1 (Keras' ``momentum=0.99`` is torch's 0.01).
        eps: added to the variance, ``> 0``. Default: 1e-5.
        affine: learn ``gamma`` and ``beta``. Default: True.
        name: optional layer name.

    Shape: ``(batch, n)`` -> ``(batch, n)``; training needs ``batch >= 2``.
    """

    min_train_batch = 2  # fit checks its batches against this before training

    def __init__(
        self,
        momentum: float | None = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
        name: str | None = None,
    ):
        super().__init__(name)
        if momentum is not None:
            momentum = check_real("momentum", momentum, 0, 1)
        self.momentum = momentum
        self.eps = check_real("eps", eps, 0, lo_open=True)
        self.affine = check_bool("affine", affine)
        self.num_batches_tracked = 0
        self._host: dict | None = None  # running stats until they are on the device
        self._running: dict | None = None  # device {"mean", "var"} in the model dtype
        self._staged: dict | None = None  # training forwards' stats, not committed
        self._x_hat = self._inv_std = None

    def build(self, n_in, rng):
        if self._host is not None and len(self._host["running_mean"]) != n_in:
            raise ArgumentError(
                f"{type(self).__name__} state has {len(self._host['running_mean'])} "
                f"features, but the layer input has {n_in}"
            )
        super().build(n_in, rng)
        if self._host is None:
            self._host = {"running_mean": np.zeros(n_in), "running_var": np.ones(n_in)}
        if not self.affine:
            return []
        return [
            ParamSpec("gamma", (n_in,), np.ones(n_in)),
            ParamSpec("beta", (n_in,), np.zeros(n_in)),
        ]

    def bind(self, backend, params, grads):
        if self._running is not None:  # bound before: keep what it learned
            self._host = self._host_stats()
        super().bind(backend, params, grads)
        self._running = self._staged = None
        if self.affine:  # else the dtype is known at the first forward
            self._stats(params["gamma"].dtype)

    def _stats(self, dtype) -> dict:
        """The running statistics on the device in ``dtype`` (copied there once)."""
        if self._running is None or self._running["mean"].dtype != dtype:
            host = self._host_stats()
            self._running = {
                key: self.backend.asarray(host["running_" + key], dtype=dtype)
                for key in ("mean", "var")
            }
        return self._running

    def _host_stats(self) -> dict:
        if self._running is None:
            return {key: value.copy() for key, value in self._host.items()}
        return {
            "running_" + key: self.backend.to_numpy(value).copy()
            for key, value in self._running.items()
        }

    # ------------------------------------------------------------------ compute
    def forward(self, x, training: bool = False):
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        # statistics in float32 for 16-bit inputs (mixed precision), else x's dtype
        dtype = np.dtype(np.float32) if is_half(x.dtype) else x.dtype
        if not training:
            stats = self._stats(dtype)
            return self.backend.batch_norm_eval(
                x, gamma, beta, stats["mean"], stats["var"], self.eps
            )
        if x.shape[0] < 2:
            raise ArgumentError(
                "Expected more than 1 value per channel when training, got input of "
                f"shape {tuple(x.shape)}"
            )
        stats = self._training_stats(dtype)
        stats["count"] += 1
        momentum = self.momentum
        if momentum is None:
            momentum = 1 / stats["count"]
        y, self._x_hat, self._inv_std = self.backend.batch_norm_train_(
            x, gamma, beta, stats["mean"], stats["var"], momentum, self.eps
        )
        if not self.stage_state:
            self.commit_state()
        return y

    def _training_stats(self, dtype) -> dict:
        """The running statistics a training forward updates: a staged copy
        (``{"mean", "var", "count"}``) made at the first one after a commit or
        discard, so a refused step leaves the running statistics as they were."""
        staged = self._staged
        if staged is None or staged["mean"].dtype != dtype:
            stats = self._stats(dtype)
            staged = {key: value.copy() for key, value in stats.items()}
            staged["count"] = self.num_batches_tracked
            self._staged = staged
        return staged

    def commit_state(self) -> None:
        """Makes the staged running statistics the running statistics."""
        staged, self._staged = self._staged, None
        if staged is None:
            return
        for key, device in self._stats(staged["mean"].dtype).items():
            device[...] = staged[key]  # in place: the arrays stay put
        self.num_batches_tracked = staged["count"]

    def discard_state(self) -> None:
        self._staged = None

    def staged_is_finite(self):
        """Whether the staged running statistics are finite (one extreme but finite
        input row can overflow the batch variance), or None when none are staged."""
        staged = self._staged
        if staged is None:
            return None
        isfinite = self.backend.xp.isfinite
        return isfinite(staged["mean"]).all() & isfinite(staged["var"]).all()

    def backward(self, dy):
        return self.backend.backprop_batch_norm_(
            dy,
            self._x_hat,
            self._inv_std,
            self.params.get("gamma"),
            self.grads.get("gamma"),
            self.grads.get("beta"),
            need_dx=self.needs_dx,
        )

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        """``{"running_mean", "running_var": (n,), "num_batches_tracked": ()}`` as host
        copies (empty before the layer is built or given state). In the middle of a
        step (gradients accumulated over several batches) the staged statistics,
        which the step will commit: a checkpoint taken there resumes bitwise."""
        if self._host is None:
            return {}
        staged = self._staged
        if staged is None:
            state = self._host_stats()
            count = self.num_batches_tracked
        else:
            host = self.backend.to_numpy
            state = {f"running_{k}": host(staged[k]).copy() for k in ("mean", "var")}
            count = staged["count"]
        state["num_batches_tracked"] = np.array(count, np.int64)
        return state

    def set_state(self, state) -> None:
        """Restores :meth:`get_state`'s dict; validates names, shapes (``(n,)``, with
        ``n`` the input width), finiteness, ``running_var >= 0`` and a count ``>= 0``
        before changing anything."""
        if not state and self._host is None:
            return
        n = (
            self.n_in
            if self.n_in is not None
            else state_width(self, state, "running_mean")
        )
        found = check_state(
            self,
            state,
            {"running_mean": (n,), "running_var": (n,), "num_batches_tracked": ()},
        )
        count = found.pop("num_batches_tracked")
        if (found["running_var"] < 0).any():
            raise ArgumentError("BatchNorm state 'running_var' must be >= 0")
        if not 0 <= count < 2**63 or count != int(count):  # saved as int64
            raise ArgumentError(
                "BatchNorm state 'num_batches_tracked' must be an int >= 0 (and "
                f"below 2**63), got {count}"
            )
        self.num_batches_tracked = int(count)
        self._staged = None
        if self._running is None:
            self._host = found
            return
        for key, device in self._running.items():  # in place: arrays stay put
            device[...] = self.backend.asarray(found["running_" + key], device.dtype)

    # ------------------------------------------------------------------ introspection
    def flops_per_sample(self) -> int:
        return 2 * (self.n_in or 0)

    def get_config(self) -> dict:
        return {
            "momentum": self.momentum,
            "eps": self.eps,
            "affine": self.affine,
            "name": self.name,
        }
