"""``ModelCheckpoint``: the callback that writes training checkpoints (the loop it
saves, and resume, are in :mod:`gpunn.checkpointing`)."""

from __future__ import annotations

import errno
import os
import re
import secrets
import string
import warnings

import numpy as np

from gpunn import distributed
from gpunn.callbacks.base import Callback, _Monitor
from gpunn.checks import check_bool, check_int, check_path
from gpunn.errors import ArgumentError
from gpunn.persistence.training_state import written_by

_POSITION_FIELDS = ("epoch", "batch", "step")


class ModelCheckpoint(Callback):
    """Saves the whole training state (parameters, layer state, optimizer state and
    step, lr schedule, generators, callbacks' state, loop position) so that
    ``fit(..., resume_from=path)`` continues bitwise where it stopped (on the CPU).

    As ``keras.callbacks.ModelCheckpoint`` (with Keras' ``BackupAndRestore``
    resume). Each file is written atomically (temp file, fsync, ``os.replace``), so a
    crash mid-save leaves the previous checkpoint intact. The callback runs after the
    others at every hook, so what it saves includes their updates for that epoch.

    Args:
        path: the file to write; may hold the format fields ``{epoch}`` (1-based: the
            epochs completed at an epoch-end save, the epoch in progress at a batch
            save), ``{batch}`` (batches done in that epoch), ``{step}`` (optimizer
            updates so far) and, for epoch-end saves, the epoch logs
            (``"ckpt-{epoch:03d}-{val_loss:.3f}.safetensors"``).
        monitor: the epoch log ``save_best_only`` watches. Default: ``"val_loss"``.
        save_best_only: save only when ``monitor`` improves on the best so far.
            Needs ``save_freq="epoch"``. Default: False.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name). Default: ``"auto"``.
        save_freq: ``"epoch"`` (at each epoch end) or an int ``n``: after every
            ``n`` batches, counted across epochs. Default: ``"epoch"``.
        keep_last: keep only the last ``n`` files this callback wrote (by distinct
            path): older ones are deleted once the new one is committed. Only files
            this run wrote are ever deleted: a path its ``path`` pattern produced,
            whose file still carries this run's id (a resumed run continues the
            run of its checkpoint when the callback has the same ``path``; a
            file since replaced by another run is kept, with a warning). Default:
            None (keep all).
        verbose: print a line for each save. Default: 0.
    """

    writes_weights = False  # reads the model only

    runs_last = True  # CallbackList calls it after the other callbacks

    def __init__(
        self,
        path,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
        save_freq="epoch",
        keep_last: int | None = None,
        verbose: int = 0,
    ):
        self.path = os.fspath(check_path("path", path))
        self._monitor = _Monitor(monitor, mode, 0.0)
        self.monitor = monitor
        self.save_best_only = check_bool("save_best_only", save_best_only)
        if save_freq != "epoch":
            save_freq = check_int("save_freq", save_freq, 1)
        self.save_freq = save_freq
        self.keep_last = (
            None if keep_last is None else check_int("keep_last", keep_last, 1)
        )
        if self.save_best_only and save_freq != "epoch":
            raise ArgumentError(
                "save_best_only needs save_freq='epoch' (epoch logs), got "
                f"{save_freq!r}"
            )
        fields = _format_fields(self.path)
        if save_freq != "epoch" and not fields <= set(_POSITION_FIELDS):
            raise ArgumentError(
                f"path may use only the fields {list(_POSITION_FIELDS)} with "
                f"save_freq={save_freq}, got {sorted(fields)} in {self.path!r}"
            )
        self._written = _pattern(self.path)
        self.verbose = _verbosity(verbose)
        self.saved: list[str] = []
        self.batches = 0
        self.run = secrets.token_hex(8)  # the id its files carry, see keep_last

    @property
    def state_key(self) -> str:
        return f"ModelCheckpoint({self.path})"

    # ------------------------------------------------------------ hooks
    def check_arguments(self, logs=None):
        """Before the first step: ``monitor`` (with ``save_best_only``), the path
        formatted with sample values of every field it may use (ValueError naming
        the fields), and the directory of its field-free part created and
        writable (the OSError names it)."""
        if self.save_best_only:
            self._monitor.check(logs)
        dp = distributed.active(self.model)
        if dp is not None and self.save_freq != "epoch":
            raise ArgumentError(
                f"save_freq={self.save_freq} (mid-epoch checkpoints) is not supported "
                f"with {dp.size} data-parallel ranks; use save_freq='epoch'"
            )
        names = (logs or {}).get("log_names")
        sample = {"epoch": 1, "batch": 0, "step": 0}
        if names is not None and self.save_freq == "epoch":
            sample = {**dict.fromkeys(names, 0.0), **sample}
        if names is not None or _format_fields(self.path) <= set(sample):
            self._format(sample)
        if distributed.is_primary():
            _make_directory(self.path)

    def on_train_begin(self, logs=None):
        if self._resuming():
            return
        self._monitor.reset()
        self.saved, self.batches, self.run = [], 0, secrets.token_hex(8)

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self.batches += 1
        if self.batches % self.save_freq == 0:
            loop = self.model._loop
            self._save(loop.epoch + 1, loop.batch, {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq != "epoch":
            return
        previous = self._monitor.best
        if self.save_best_only:
            value = self._monitor.value(logs)
            if not self._monitor.better(value, previous):
                return
            self._monitor.best = value
        try:
            self._save(epoch + 1, 0, logs or {})
        except BaseException:
            self._monitor.best = previous
            raise

    def _save(self, epoch: int, batch: int, logs: dict) -> None:
        fields = {"epoch": epoch, "batch": batch, "step": self.model.optimizer.steps}
        path = self._format({**logs, **fields})
        previous = list(self.saved)
        self.saved = [p for p in self.saved if p != path] + [path]  # saved with it
        try:
            self.model._loop.save(path, self.run)
        except BaseException:
            self.saved = previous
            raise
        if self.verbose and distributed.is_primary():
            print(f"ModelCheckpoint: saved {path}")
        if distributed.is_primary():
            self._prune()
        else:  # the other ranks keep the same list of files, written by rank 0
            self.saved = self.saved[-self.keep_last :] if self.keep_last else self.saved

    def _format(self, fields: dict) -> str:
        try:
            return self.path.format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            what = "epoch-end" if self.save_freq == "epoch" else "batch"
            raise ArgumentError(
                f"ModelCheckpoint path {self.path!r} cannot be formatted with the "
                f"fields of a {what} save, {sorted(fields)}: {exc!r}"
            ) from None

    def _prune(self) -> None:
        """Deletes the oldest files beyond ``keep_last`` (the new one is committed),
        each only if its pattern made it and it still carries this run's id."""
        if self.keep_last is None:
            return
        old, self.saved = self.saved[: -self.keep_last], self.saved[-self.keep_last :]
        for path in old:
            if not os.path.lexists(path):
                continue
            if not self._written.fullmatch(path) or not written_by(path, self.run):
                warnings.warn(
                    f"ModelCheckpoint: kept {path}: it is no longer a checkpoint "
                    "this run wrote (replaced since?), so keep_last does not delete "
                    "it",
                    stacklevel=2,
                )
                continue
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    # ------------------------------------------------------------ state
    def get_state(self) -> dict:
        """The files written (oldest first), the batch count, the best value and
        the run id the files carry."""
        return {
            "saved": list(self.saved),
            "batches": self.batches,
            "run": self.run,
            **self._monitor.get_state(),
        }

    def set_state(self, state) -> None:
        keys = ("saved", "batches", "run", "monitor", "mode", "best")
        if not isinstance(state, dict) or set(state) != set(keys):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"ModelCheckpoint state must have {sorted(keys)}, got {got}"
            )
        saved, run = state["saved"], state["run"]
        if not isinstance(saved, list) or not all(isinstance(p, str) for p in saved):
            raise ValueError(
                f"ModelCheckpoint state 'saved' must be paths, got {saved!r}"
            )
        foreign = [p for p in saved if not self._written.fullmatch(p)]
        if foreign:
            raise ValueError(
                f"ModelCheckpoint state 'saved' lists {foreign}, which its path "
                f"{self.path!r} cannot have produced"
            )
        if not isinstance(run, str) or not re.fullmatch("[0-9a-f]{16}", run):
            raise ValueError(
                f"ModelCheckpoint state 'run' must be 16 hex digits, got {run!r}"
            )
        best = self._monitor.checked_best(state)
        batches = check_int("batches", state["batches"], 0)
        self.saved, self.batches, self.run = list(saved), batches, run
        self._monitor.best = best
        self._restored = True


def _pattern(path: str) -> re.Pattern:
    """The paths ``path.format(...)`` can give: its literal text, and for each field
    anything without a path separator."""
    separators = re.escape(os.sep + (os.altsep or ""))
    parts = [
        re.escape(literal) + (f"[^{separators}]*" if name is not None else "")
        for literal, name, _, _ in string.Formatter().parse(path)
    ]
    return re.compile("".join(parts), re.DOTALL)


def _make_directory(path: str) -> None:
    """Creates the directory of ``path``'s text before its first field; an OSError
    naming it when it cannot be created or written in."""
    literal, name, _, _ = next(iter(string.Formatter().parse(path)), ("", None, 0, 0))
    directory = os.path.dirname(literal if name is not None else path)
    if not directory:
        return
    try:
        os.makedirs(directory, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable", directory)
    except OSError as exc:
        raise type(exc)(
            exc.errno,
            f"ModelCheckpoint cannot write checkpoints into the directory of its path "
            f"{path!r}: {exc.strerror}",
            exc.filename,
        ) from exc


def _format_fields(path: str) -> set:
    try:
        parsed = list(string.Formatter().parse(path))
    except ValueError as exc:
        raise ArgumentError(
            f"path {path!r} is not a valid format string: {exc}"
        ) from None
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in parsed if name}


def _verbosity(verbose) -> int:
    """0 (silent) or 1 (a line per save), as Keras' ``verbose``."""
    if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1):
        raise ArgumentError(f"verbose must be 0 or 1, got {verbose!r}")
    return int(verbose)
