"""Callbacks that watch the epoch logs or the loss: ``EarlyStopping``,
``ReduceLROnPlateau``, ``TerminateOnNaN`` and ``LearningRateScheduler``."""

from __future__ import annotations

import math

import numpy as np

from gpunn.callbacks.base import Callback, _entries, _Monitor
from gpunn.checks import check_int, check_real


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves when it beats the best value so far by more than ``min_delta``.
    With ``restore_best_weights`` the parameters and layer state (e.g. BatchNorm
    statistics) of the best epoch are put back when training stops early or ends.

    Args:
        monitor: epoch log to watch. Default: ``"val_loss"``.
        min_delta: smallest change that counts as an improvement. Default: 0.
        patience: epochs without improvement before stopping. Default: 0.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name). Default: ``"auto"``.
        baseline: training stops unless the monitor beats this value within
            ``patience`` epochs. Default: None.
        restore_best_weights: see above. Default: False.
        start_from_epoch: epochs of warm-up before any check. Default: 0.

    Attributes: ``stopped_epoch`` (0 if it never stopped), ``best``, ``best_epoch``.
    """

    writes_weights = False  # reads the model only

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ):
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.monitor = monitor
        self.patience = check_int("patience", patience, 0)
        self.baseline = None if baseline is None else check_real("baseline", baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_int("start_from_epoch", start_from_epoch, 0)

    def check_arguments(self, logs=None):
        self._monitor.check(logs)

    def on_train_begin(self, logs=None):
        if self._resuming():
            return
        self._monitor.reset()
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self._best_snapshot = None

    @property
    def best(self) -> float:
        return self._monitor.best

    @property
    def state_key(self) -> str:
        return f"EarlyStopping({self.monitor})"

    def get_state(self) -> dict:
        """Counters, the best value and, with ``restore_best_weights``, the best
        epoch's flat parameters and layer state (arrays)."""
        snapshot = getattr(self, "_best_snapshot", None)
        if snapshot is not None:
            params = self.model.backend.to_numpy(snapshot["params"]).copy()
            snapshot = {"params": params, "state": snapshot["state"]}
        counters = ("wait", "stopped_epoch", "best_epoch")
        state = {name: getattr(self, name, 0) for name in counters}
        return {**state, **self._monitor.get_state(), "best_snapshot": snapshot}

    def set_state(self, state) -> None:
        keys = ("wait", "stopped_epoch", "best_epoch", "monitor", "mode", "best")
        state = _entries(self, state, (*keys, "best_snapshot"))
        best = self._monitor.checked_best(state)
        counters = [check_int(name, state[name], 0) for name in keys[:3]]
        snapshot = _checked_snapshot(self.model, state["best_snapshot"])
        self.wait, self.stopped_epoch, self.best_epoch = counters
        self._monitor.best, self._best_snapshot = best, snapshot
        self._restored = True

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        value = self._monitor.value(logs)
        self.wait += 1
        if self._monitor.better(value, self._monitor.best):
            self._monitor.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self._best_snapshot = self.model._snapshot(with_scaler=False)
            if self.baseline is None or self._monitor.better(value, self.baseline):
                self.wait = 0
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_snapshot is not None:
            self.model._restore(self._best_snapshot)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when ``monitor`` stops improving.

    It composes with a schedule: it scales the optimizer's ``lr_scale``, so the
    schedule keeps its shape and every later step uses ``factor`` times what the
    schedule gives. The lr is never taken below ``min_lr`` by a reduction.

    Args:
        monitor: epoch log to watch. Default: ``"val_loss"``.
        factor: multiplier in (0, 1). Default: 0.1.
        patience: epochs without improvement before a reduction. Default: 10.
        mode: ``"min"``, ``"max"`` or ``"auto"``. Default: ``"auto"``.
        min_delta: smallest change that counts as an improvement. Default: 1e-4.
        cooldown: epochs to wait after a reduction before counting again. Default: 0.
        min_lr: lower bound on the learning rate. Default: 0.
        verbose: print a line on each reduction. Default: 0.
    """

    writes_weights = False  # reads the model only

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        verbose: int = 0,
    ):
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.monitor = monitor
        self.factor = check_real("factor", factor, 0, 1, lo_open=True, hi_open=True)
        self.patience = check_int("patience", patience, 0)
        self.cooldown = check_int("cooldown", cooldown, 0)
        self.min_lr = check_real("min_lr", min_lr, lo=0)
        self.verbose = verbose

    def check_arguments(self, logs=None):
        self._monitor.check(logs)

    def on_train_begin(self, logs=None):
        if self._resuming():
            return
        self._monitor.reset()
        self.wait = self.cooldown_counter = 0

    @property
    def state_key(self) -> str:
        return f"ReduceLROnPlateau({self.monitor})"

    def get_state(self) -> dict:
        """The counters and the best value (the lr itself is the optimizer's)."""
        counters = {n: getattr(self, n, 0) for n in ("wait", "cooldown_counter")}
        return {**counters, **self._monitor.get_state()}

    def set_state(self, state) -> None:
        keys = ("wait", "cooldown_counter", "monitor", "mode", "best")
        state = _entries(self, state, keys)
        best = self._monitor.checked_best(state)
        wait, cooldown = (check_int(n, state[n], 0) for n in keys[:2])
        self.wait, self.cooldown_counter, self._monitor.best = wait, cooldown, best
        self._restored = True

    def on_epoch_end(self, epoch, logs=None):
        value = self._monitor.value(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.better(value, self._monitor.best):
            self._monitor.best, self.wait = value, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                self._reduce(epoch)
                self.cooldown_counter, self.wait = self.cooldown, 0

    def _reduce(self, epoch: int) -> None:
        optimizer = self.model.optimizer
        lr = optimizer.lr  # what the next step uses, lr_scale included
        if lr <= self.min_lr:
            return
        factor = max(self.factor, self.min_lr / lr)
        optimizer.lr_scale *= factor
        if self.verbose:
            print(
                f"Epoch {epoch + 1}: ReduceLROnPlateau: lr {lr:.4g} -> {lr * factor:.4g}"
            )


class TerminateOnNaN(Callback):
    """Stops training at the first batch whose loss or gradients are NaN or infinite.

    ``fit`` checks each step before its update (the model's ``check_finite``, see
    :mod:`gpunn.faults`): a non-finite step raises NonFiniteError, but with this
    callback the step's update is skipped instead (parameters, optimizer state and
    step count stay as before it), the error's message is printed, and training
    ends after that batch's callbacks (its logs hold its loss). With
    ``check_finite`` off it stops, as Keras' ``TerminateOnNaN``, after the first batch
    whose ``logs["loss"]`` is not finite, that batch's update applied. It reads each
    batch's loss, so on a GPU it waits for the device once per batch."""

    writes_weights = False  # reads the model only

    _skipped = False  # on_non_finite_step stopped training at this batch

    def on_train_begin(self, logs=None):
        self._skipped = False

    def on_non_finite_step(self, batch: int, error) -> None:
        """Called by fit's step check (batch 0-based) instead of raising ``error``:
        the step is skipped and training stops."""
        print(f"Batch {batch}: {error}; terminating training")
        self.model.stop_training, self._skipped = True, True

    def on_train_batch_end(self, batch, logs=None):
        if self._skipped:  # on_non_finite_step has stopped training and said why
            self._skipped = False
            return
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of each epoch from ``schedule(epoch, lr)``
    (or ``schedule(epoch)``), ``epoch`` 0-based and ``lr`` the current one, as Keras.
    The value replaces any step schedule on the optimizer. For per-step schedules
    pass a :mod:`gpunn.schedules` schedule as the optimizer's ``lr`` instead.
    """

    writes_weights = False  # reads the model only

    def __init__(self, schedule, verbose: int = 0):
        if not callable(schedule):
            raise TypeError(f"schedule must be callable, got {type(schedule).__name__}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        try:
            lr = self.schedule(epoch, optimizer.lr)
        except TypeError:
            lr = self.schedule(epoch)
        lr = check_real(f"schedule({epoch}) result", lr, lo=0, lo_open=True)
        optimizer.lr = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler: lr {lr:.4g}")


def _checked_snapshot(model, snapshot):
    """A saved ``{"params": flat host array, "state": layer state}`` as
    ``model._snapshot()`` makes it (params on the device), or None. ValueError
    unless the parameters are the model's shape and dtype and finite, and the
    model's layers take the state (tried, then put back)."""
    if snapshot is None:
        return None
    arena = model.arena if model is not None else None
    valid = isinstance(snapshot, dict) and set(snapshot) == {"params", "state"}
    params = snapshot.get("params") if valid else None
    expected = None if arena is None else (arena.params.shape, arena.params.dtype)
    got = getattr(params, "shape", None), getattr(params, "dtype", None)
    if expected is None or got != expected or not isinstance(snapshot["state"], dict):
        raise ValueError(
            f"best_snapshot must hold the model's flat parameters {expected} and "
            f"its layer state, got {got}"
        )
    if not np.isfinite(params).all():
        raise ValueError("best_snapshot parameters contain NaN or infinity")
    current = model.get_state()
    model.set_state(snapshot["state"])  # all or nothing: ValueError names the entry
    model.set_state(current)
    return {"params": model.backend.asarray(params), "state": snapshot["state"]}
