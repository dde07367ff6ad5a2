"""Training checkpoints: ``ModelCheckpoint`` writes them, ``fit(resume_from=path)``
continues from one, bitwise as if training had never stopped (on the CPU).

:class:`FitLoop` is where ``fit`` is: the epoch in progress, the batches done in it,
the model generator's state when the epoch began (so its permutation can be drawn
again) and the epoch's running totals. A checkpoint saves it with the rest of the
training state (:mod:`gpunn.persistence.training_state`).
"""

from __future__ import annotations

import os
import string

from gpunn import distributed
from gpunn.callbacks import Callback, _Monitor
from gpunn.checks import check_int
from gpunn.errors import CheckpointError

_POSITION_FIELDS = ("epoch", "batch", "step")


class FitLoop:
    """The position of one ``fit`` call, read and restored by checkpoints.

    Args:
        model: the model being trained (``model._loop`` is set to this loop).
        callbacks: the run's callbacks, whose state checkpoints save.
        n_samples, batch_size, shuffle, accumulate_steps: the run's settings; a
            checkpoint taken mid-epoch resumes only with the same ones.
    """

    def __init__(self, model, callbacks, n_samples, batch_size, shuffle, accumulate):
        self.model, self.callbacks = model, list(callbacks)
        self.config = {
            "n_samples": n_samples,
            "batch_size": batch_size,
            "shuffle": bool(shuffle),
            "accumulate_steps": accumulate,
        }
        self.epoch = self.batch = 0  # epoch in progress, batches done in it
        self.epoch_rng = None
        self.totals = self.accumulator = None
        self._saved = None  # a resumed mid-epoch position, used by start_epoch
        model._loop = self

    # ------------------------------------------------------------ the fit loop
    def epochs(self, total: int) -> range:
        """The epochs left to run: from the resumed one to ``total`` (none when the
        checkpoint was taken after training was stopped)."""
        return range(0) if self.model.stop_training else range(self.epoch, total)

    def start_epoch(self, totals, accumulator):
        """``(first batch, permutation or None)`` for the epoch in progress: a fresh
        permutation from the model's generator, or on a resumed epoch the same one
        again, with the totals and accumulated gradient it had reached."""
        self.totals, self.accumulator = totals, accumulator
        rng, saved, self._saved = self.model.rng, self._saved, None
        if saved is not None:
            rng.bit_generator.state = saved["epoch_rng"]
        self.epoch_rng = rng.bit_generator.state
        order = (
            rng.permutation(self.config["n_samples"])
            if self.config["shuffle"]
            else None
        )
        if saved is None:
            self.batch = 0
            return 0, order
        rng.bit_generator.state = saved["rng"]
        self._restore_totals(saved)
        return self.batch, order

    def end_epoch(self, epoch: int) -> None:
        """Called once the epoch's batches and validation are done, before the
        callbacks' ``on_epoch_end``: a checkpoint then resumes at the next epoch."""
        self.epoch, self.batch = epoch + 1, 0
        self.totals = self.accumulator = None

    # ------------------------------------------------------------ state
    def get_state(self) -> tuple[dict, dict]:
        """``(JSON-able position, tensors)``; mid-epoch it includes the epoch's
        starting generator state and running totals (``loop.losses``,
        ``loop.stats.<i>``, ``loop.accumulator``)."""
        state = {
            "epoch": self.epoch,
            "batch": self.batch,
            "stop_training": bool(getattr(self.model, "stop_training", False)),
            "config": self.config,
            "epoch_rng": None,
            "sizes": [],
            "accumulated": None,
        }
        if self.batch == 0:
            return state, {}
        backend, totals = self.model.backend, self.totals
        host = lambda arrays: backend.to_numpy(backend.xp.stack(arrays))
        tensors = {"loop.losses": host(totals.losses)}
        tensors.update({f"loop.stats.{i}": host(s) for i, s in enumerate(totals.stats)})
        state.update(epoch_rng=self.epoch_rng, sizes=list(totals.sizes))
        accumulator = self.accumulator
        if accumulator is not None and accumulator.batches:
            tensors["loop.accumulator"] = backend.to_numpy(accumulator.buffer)
            state["accumulated"] = [accumulator.batches, accumulator.total]
        return state, tensors

    def resume(self, path) -> None:
        """Restores the model, optimizer, generators and callbacks from the
        checkpoint at ``path`` and moves this loop to its position. CheckpointError,
        with nothing changed, when it does not fit (model, optimizer, dtype, or a
        mid-epoch position with other data size, batch size, shuffle or
        accumulation)."""
        training_state = _training_state()
        tensors, metadata = training_state.read(path)
        restore = training_state.Restore(
            self.model, tensors, metadata, self.callbacks, path
        )
        loop = restore.loop
        if loop is not None:
            self._check_position(loop, restore.loop_tensors, path)
        restore.apply()
        if loop is None:
            return
        self.epoch, self.batch = loop["epoch"], loop["batch"]
        self.model.stop_training = bool(loop["stop_training"])
        if self.batch > 0:
            self._saved = {**loop, "rng": self.model.rng.bit_generator.state}
            self._saved["tensors"] = restore.loop_tensors

    def _check_position(self, loop: dict, tensors: dict, path) -> None:
        """CheckpointError, before anything is restored, unless this fit can go on
        from the saved position: mid-epoch, with the same settings and totals."""
        try:
            check_int("loop.epoch", loop["epoch"], 0)
            if check_int("loop.batch", loop["batch"], 0) == 0:
                return
            saved = loop["config"]
            mismatched = [
                f"loop.{key}: checkpoint {saved.get(key)}, this fit {value}"
                for key, value in self.config.items()
                if saved.get(key) != value
            ]
            counts = len(tensors["loop.losses"]), len(loop["sizes"]), loop["batch"]
            n_stats = sum(1 for key in tensors if key.startswith("loop.stats."))
            counts += (n_stats, len(self.model.metrics))
            if counts[0] != counts[2] or counts[1] != counts[2] or n_stats != counts[4]:
                mismatched.append(
                    f"loop totals: checkpoint {counts[:2]} batches and {n_stats} "
                    f"metrics at batch {counts[2]}, model {counts[4]} metrics"
                )
            if loop["accumulated"] is not None and "loop.accumulator" not in tensors:
                mismatched.append("loop.accumulator: missing")
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: unreadable loop position: {exc}") from exc
        if mismatched:
            raise CheckpointError(
                f"checkpoint {path} was taken mid-epoch and resumes only with the "
                f"same data and settings: mismatched {mismatched}"
            )

    def _restore_totals(self, saved: dict) -> None:
        backend, tensors, totals = self.model.backend, saved["tensors"], self.totals
        rows = lambda name: list(backend.asarray(tensors[name]))
        totals.losses, totals.sizes = rows("loop.losses"), list(saved["sizes"])
        totals.stats = [rows(f"loop.stats.{i}") for i in range(len(totals.stats))]
        if saved["accumulated"] is not None:
            accumulator = self.accumulator
            accumulator.buffer[...] = backend.asarray(tensors["loop.accumulator"])
            accumulator.batches, accumulator.total = saved["accumulated"]


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
            path): older ones are deleted once the new one is committed. Default:
            None (keep all).
        verbose: print a line for each save. Default: 0.
    """

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
        self.path = os.fspath(path)
        self._monitor = _Monitor(monitor, mode, 0.0)
        self.monitor, self.save_best_only = monitor, bool(save_best_only)
        if save_freq != "epoch":
            save_freq = check_int("save_freq", save_freq, 1)
        self.save_freq = save_freq
        self.keep_last = (
            None if keep_last is None else check_int("keep_last", keep_last, 1)
        )
        if self.save_best_only and save_freq != "epoch":
            raise ValueError(
                "save_best_only needs save_freq='epoch' (epoch logs), got "
                f"{save_freq!r}"
            )
        fields = _format_fields(self.path)
        if save_freq != "epoch" and not fields <= set(_POSITION_FIELDS):
            raise ValueError(
                f"path may use only the fields {list(_POSITION_FIELDS)} with "
                f"save_freq={save_freq}, got {sorted(fields)} in {self.path!r}"
            )
        self.verbose = verbose
        self.saved: list[str] = []
        self.batches = 0

    # ------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        if self.save_best_only:
            self._monitor.check(logs)
        dp = distributed.active(self.model)
        if dp is not None and self.save_freq != "epoch":
            raise ValueError(
                f"save_freq={self.save_freq} (mid-epoch checkpoints) is not supported "
                f"with {dp.size} data-parallel ranks; use save_freq='epoch'"
            )
        if self._resuming():
            return
        self._monitor.reset()
        self.saved, self.batches = [], 0

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
        try:
            path = self.path.format(**{**logs, **fields})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"ModelCheckpoint path {self.path!r} cannot be formatted with "
                f"{sorted({**logs, **fields})}: {exc!r}"
            ) from None
        previous = list(self.saved)
        self.saved = [p for p in self.saved if p != path] + [path]  # saved with it
        try:
            _training_state().save(
                path, self.model, self.model._loop.callbacks, self.model._loop
            )
        except BaseException:
            self.saved = previous
            raise
        if self.verbose and distributed.is_primary():
            print(f"ModelCheckpoint: saved {path}")
        if distributed.is_primary():
            self._prune()
        else:  # the other ranks keep the same list of files, written by rank 0
            self.saved = self.saved[-self.keep_last :] if self.keep_last else self.saved

    def _prune(self) -> None:
        """Deletes the oldest files beyond ``keep_last`` (the new one is committed)."""
        if self.keep_last is None:
            return
        old, self.saved = self.saved[: -self.keep_last], self.saved[-self.keep_last :]
        for path in old:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    # ------------------------------------------------------------ state
    def get_state(self) -> dict:
        """The files written (oldest first), the batch count and the best value."""
        return {
            "saved": list(self.saved),
            "batches": self.batches,
            **self._monitor.get_state(),
        }

    def set_state(self, state) -> None:
        keys = ("saved", "batches", "monitor", "mode", "best")
        if not isinstance(state, dict) or set(state) != set(keys):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"ModelCheckpoint state must have {sorted(keys)}, got {got}"
            )
        saved = state["saved"]
        if not isinstance(saved, list) or not all(isinstance(p, str) for p in saved):
            raise ValueError(
                f"ModelCheckpoint state 'saved' must be paths, got {saved!r}"
            )
        best = self._monitor.checked_best(state)
        self.batches = check_int("batches", state["batches"], 0)
        self.saved, self._monitor.best = list(saved), best
        self._restored = True


def _format_fields(path: str) -> set:
    try:
        parsed = list(string.Formatter().parse(path))
    except ValueError as exc:
        raise ValueError(f"path {path!r} is not a valid format string: {exc}") from None
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in parsed if name}


def _training_state():
    """:mod:`gpunn.persistence.training_state`, imported on first use: ``fit``
    imports this module, and the persistence package imports the model."""
    from gpunn.persistence import training_state

    return training_state
