"""The callback protocol (:class:`Callback`, :class:`CallbackList`), ``History`` and
the monitor shared by the callbacks that watch an epoch log."""

from __future__ import annotations

import math

from gpunn.checks import check_int, check_real

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
    """Base class: every hook is a no-op. ``self.model`` is set by ``fit``.

    ``writes_weights``: whether the hooks may write the model's parameters in place
    (through ``layer.params`` views: a max-norm constraint, weight averaging). Under
    mixed precision the model then re-casts its 16-bit weights after such a
    callback's hooks. True for a callback of your own; set it to False when yours
    only reads, to save that cast (gpunn's own callbacks do; ``set_weights`` and
    EarlyStopping's restore mark the weights themselves)."""

    model = None
    writes_weights = True
    _restored = False  # set by set_state: the next on_train_begin keeps the state

    def set_model(self, model) -> None:
        self.model = model

    @property
    def state_key(self) -> str:
        """The name a training checkpoint files this callback's state under; on
        resume the state goes to the callback with the same key, whatever the order
        of the callbacks (equal keys are matched in order). The class name, plus
        what the state is about where that tells callbacks apart
        (``"EarlyStopping(val_loss)"``, ``"CSVLogger(log.csv)"``)."""
        return type(self).__name__

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

    def check_arguments(self, logs=None) -> None:
        """Called by ``fit`` on every callback before training starts (before a
        resume restores anything, before any ``on_train_begin``) with
        ``on_train_begin``'s logs: raises, naming the argument, when the
        callback's arguments cannot work in this fit (a ``val_`` monitor without
        validation data, a checkpoint path that cannot be formatted)."""

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

    writes_weights = False  # its callbacks say for themselves

    def __init__(self, callbacks, model):
        self.model = model
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
            if callback.writes_weights and self.model.built:
                self.model.arena.params_changed()  # a flag: the next forward casts

    def check_arguments(self, logs=None):
        self._call("check_arguments", logs)

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

    writes_weights = False  # reads the model only

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
        """At the start of training: a ``val_`` monitor needs validation data and
        must be one of the validation logs ``fit`` produces (other names may be
        logs a callback adds)."""
        names = (logs or {}).get("log_names")
        if names is None or not self.monitor.startswith("val_"):
            return
        if not any(name.startswith("val_") for name in names):
            raise ValueError(
                f"monitor={self.monitor!r} needs validation data: pass "
                "validation_data or validation_split to fit, or monitor one of "
                f"{sorted(names)}"
            )
        if self.monitor not in names:
            raise ValueError(
                f"monitor={self.monitor!r} is not among the epoch logs fit will "
                f"produce, {sorted(names)}"
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
    """A copy of a saved ``History.history``: names mapped to lists of numbers."""
    if not isinstance(history, dict) or not all(
        isinstance(v, list)
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        for v in history.values()
    ):
        raise ValueError(
            f"History state 'history' must map names to lists of numbers: {history}"
        )
    return {str(key): list(values) for key, values in history.items()}
