"""Callbacks for ``fit``, with Keras' names, arguments and hooks.

A callback sees the model (``self.model``) and is called at the start and end of
training, of each epoch and of each batch. Epoch ``logs`` are host floats
(``{"loss": ..., "accuracy": ..., "val_loss": ...}``); batch ``logs`` hold the batch's
``"size"`` and its ``"loss"`` as a 0-d device array; ``on_train_begin`` gets
``{"log_names": [...]}``, the epoch log names ``fit`` will produce, so a callback that reads it
(``float(logs["loss"])``) waits for the device and one that does not costs nothing.
Setting ``model.stop_training = True`` ends ``fit`` after the current batch.
"""

from __future__ import annotations

import csv
import json
import math
import os

from gpunn import distributed
from gpunn.checks import check_int, check_real

# Names whose larger values are better, for mode="auto" (as Keras infers it).
_MAX_NAMES = ("acc", "accuracy", "precision", "recall", "f1", "r2", "auc")


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """``"min"`` or ``"max"``: ``mode`` itself, or for ``"auto"`` what ``monitor``
    implies (accuracy-like names are maximized, losses and errors minimized)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    better_high = name in _MAX_NAMES or name.endswith("accuracy")
    return "max" if better_high or name.startswith("top_") else "min"


class Callback:
    """Base class: every hook is a no-op. ``self.model`` is set by ``fit``."""

    model = None
    _restored = False  # set by set_state: the next on_train_begin keeps the state

    def set_model(self, model) -> None:
        self.model = model

    def get_state(self) -> dict | None:
        """The state a training checkpoint saves, or None for a stateless callback:
        JSON-able values (NumPy arrays allowed, saved as tensors)."""
        return None

    def set_state(self, state: dict) -> None:
        """Restores :meth:`get_state`'s dict; the next ``on_train_begin`` keeps it
        instead of starting afresh (``fit(resume_from=...)`` calls it before
        training begins). ValueError naming the entry, nothing changed, if invalid."""
        if state is not None:
            raise ValueError(f"{type(self).__name__} has no state, got {state!r}")

    def _resuming(self) -> bool:
        """True once after :meth:`set_state`: ``on_train_begin`` keeps the state."""
        restored, self._restored = self._restored, False
        return restored

    def on_train_begin(self, logs=None) -> None:
        pass

    def on_train_end(self, logs=None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        pass

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        pass


class CallbackList(Callback):
    """Calls each hook on every callback, in order (those with ``runs_last``, e.g.
    ``ModelCheckpoint``, after the others)."""

    def __init__(self, callbacks, model):
        self.callbacks = sorted(callbacks, key=lambda c: getattr(c, "runs_last", False))
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    "callbacks must be gpunn.callbacks.Callback instances, "
                    f"got {type(callback).__name__}"
                )
            callback.set_model(model)

    def _call(self, hook, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)


class History(Callback):
    """Per-epoch results of ``fit``: ``history.history["loss"]``, ``["accuracy"]``,
    ``["val_loss"]``, ... and ``history.epoch`` (0-based). ``fit`` returns it."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def get_state(self) -> dict:
        return {"epoch": list(self.epoch), "history": _copy_lists(self.history)}

    def set_state(self, state) -> None:
        state = _entries(self, state, ("epoch", "history"))
        self.epoch = [check_int("epoch", e, 0) for e in state["epoch"]]
        self.history = _copy_lists(state["history"])

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class _Monitor:
    """Tracks the best value of one epoch log; ``improved(value)`` needs it to beat the
    best by more than ``min_delta``."""

    def __init__(self, monitor: str, mode: str, min_delta: float):
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a log name, got {monitor!r}")
        self.monitor, self.mode = monitor, monitor_mode(monitor, mode)
        self.min_delta = abs(check_real("min_delta", min_delta))
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    def get_state(self) -> dict:
        return {"monitor": self.monitor, "mode": self.mode, "best": self.best}

    def checked_best(self, state: dict) -> float:
        """The ``best`` of a saved :meth:`get_state`, which must watch the same log
        in the same mode; ValueError otherwise."""
        saved = (state.get("monitor"), state.get("mode"))
        if saved != (self.monitor, self.mode):
            raise ValueError(
                f"state watches monitor={saved[0]!r} mode={saved[1]!r}, this callback "
                f"monitor={self.monitor!r} mode={self.mode!r}"
            )
        best = state.get("best")
        if isinstance(best, bool) or not isinstance(best, (int, float)):
            raise TypeError(f"state 'best' must be a number, got {best!r}")
        return float(best)

    def check(self, logs) -> None:
        """At the start of training: a ``val_`` monitor needs validation data."""
        names = (logs or {}).get("log_names")
        if names is None or not self.monitor.startswith("val_"):
            return
        if not any(name.startswith("val_") for name in names):
            raise ValueError(
                f"monitor={self.monitor!r} needs validation data: pass "
                "validation_data or validation_split to fit, or monitor one of "
                f"{sorted(names)}"
            )

    def value(self, logs) -> float:
        if self.monitor not in (logs or {}):
            raise ValueError(
                f"monitor={self.monitor!r} is not among the epoch logs "
                f"{sorted(logs or {})}; pass validation data for 'val_' names"
            )
        return logs[self.monitor]

    def better(self, value: float, reference: float) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference


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

    def on_train_begin(self, logs=None):
        self._monitor.check(logs)
        if self._resuming():
            return
        self._monitor.reset()
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self._best_snapshot = None

    @property
    def best(self) -> float:
        return self._monitor.best

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
                self._best_snapshot = self.model._snapshot()
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

    def on_train_begin(self, logs=None):
        self._monitor.check(logs)
        if self._resuming():
            return
        self._monitor.reset()
        self.wait = self.cooldown_counter = 0

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


class _FileLogger(Callback):
    def __init__(self, filename, append: bool = False):
        self.filename, self.append = filename, bool(append)
        self._file = self._size = None

    def on_train_begin(self, logs=None):
        mode = "a" if self.append else "w"
        if not distributed.is_primary():  # rank 0 alone writes the file
            self._file = open(os.devnull, "w", newline="")  # noqa: SIM115
            return
        if self._resuming() and self._size is not None:
            with open(self.filename, "a") as file:  # rows after the checkpoint go
                file.truncate(min(self._size, os.fstat(file.fileno()).st_size))
            mode = "a"
        self._file = open(self.filename, mode, newline="")  # noqa: SIM115

    def get_state(self) -> dict:
        """``{"size"}``: the file's length in bytes (None outside training). A
        resumed run cuts the file back to it, dropping the rows written after the
        checkpoint, and appends."""
        if self._file is None:
            return {"size": None}
        self._file.flush()
        return {"size": os.fstat(self._file.fileno()).st_size}

    def set_state(self, state) -> None:
        size = _entries(self, state, ("size",))["size"]
        self._size = None if size is None else check_int("size", size, 0)
        self._restored = True

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class CSVLogger(_FileLogger):
    """Writes one row per epoch (``epoch`` and the sorted log names) to ``filename``.

    Args:
        filename: the CSV file.
        separator: field separator. Default: ``","``.
        append: add to an existing file (no second header). Default: False.
    """

    def __init__(self, filename, separator: str = ",", append: bool = False):
        super().__init__(filename, append)
        self.separator = separator
        self._writer = self._keys = None

    def on_train_begin(self, logs=None):
        keys = self._keys if self._restored else None  # a resumed run keeps columns
        super().on_train_begin(logs)
        self._writer, self._keys = None, keys
        self._header = os.fstat(self._file.fileno()).st_size == 0

    def get_state(self) -> dict:
        """``{"size", "keys"}``: the file's length (see ``JSONLinesLogger``) and
        the columns, which a resumed run keeps."""
        keys = None if self._keys is None else list(self._keys)
        return {**super().get_state(), "keys": keys}

    def set_state(self, state) -> None:
        columns = _entries(self, state, ("size", "keys"))["keys"]
        names = isinstance(columns, list) and all(isinstance(k, str) for k in columns)
        if columns is not None and not names:
            raise ValueError(f"CSVLogger state 'keys' must be names, got {columns!r}")
        super().set_state({"size": state["size"]})
        self._keys = None if columns is None else list(columns)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            self._keys = sorted(logs) if self._keys is None else self._keys
            fields = ["epoch", *self._keys]
            self._writer = csv.DictWriter(
                self._file, fields, delimiter=self.separator, extrasaction="ignore"
            )
            if self._header:
                self._writer.writeheader()
        self._writer.writerow(
            {"epoch": epoch, **{k: logs.get(k, "") for k in self._keys}}
        )
        self._file.flush()


class JSONLinesLogger(_FileLogger):
    """Writes one JSON object per epoch, ``{"epoch": 0, "loss": ..., ...}``, per line
    to ``filename`` (JSON Lines); ``append`` adds to an existing file. Resumed from a
    checkpoint, it cuts the file back to its length then and appends."""

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch, **(logs or {})}
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()


def _entries(callback, state, keys) -> dict:
    """``state`` if it is a dict with exactly ``keys``; ValueError naming them."""
    if not isinstance(state, dict) or set(state) != set(keys):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{type(callback).__name__} state must have the entries {sorted(keys)}, "
            f"got {got}"
        )
    return state


def _copy_lists(history) -> dict:
    if not isinstance(history, dict) or not all(
        isinstance(v, list) for v in history.values()
    ):
        raise ValueError(f"History state 'history' must map names to lists: {history}")
    return {str(key): list(values) for key, values in history.items()}


def _checked_snapshot(model, snapshot):
    """A saved ``{"params": flat host array, "state": layer state}`` as
    ``model._snapshot()`` makes it (params on the device), or None."""
    if snapshot is None:
        return None
    arena = model.arena if model is not None else None
    params = snapshot.get("params") if isinstance(snapshot, dict) else None
    expected = None if arena is None else (arena.params.shape, arena.params.dtype)
    got = getattr(params, "shape", None), getattr(params, "dtype", None)
    if expected is None or got != expected or not isinstance(snapshot["state"], dict):
        raise ValueError(
            f"best_snapshot must hold the model's flat parameters {expected} and "
            f"its layer state, got {got}"
        )
    return {"params": model.backend.asarray(params), "state": snapshot["state"]}


def __getattr__(name: str):
    """``ModelCheckpoint`` lives in :mod:`gpunn.checkpointing`, beside the loop
    state it saves; it is importable from here as in Keras."""
    if name == "ModelCheckpoint":
        from gpunn.checkpointing import ModelCheckpoint

        return ModelCheckpoint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
