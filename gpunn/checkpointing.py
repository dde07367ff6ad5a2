"""Training checkpoints: ``ModelCheckpoint`` writes them, ``fit(resume_from=path)``
continues from one, bitwise as if training had never stopped (on the CPU).

:class:`FitLoop` is where ``fit`` is: the epoch in progress, the batches done in it,
the model generator's state when the epoch began (so its permutation can be drawn
again) and the epoch's running totals. A checkpoint saves it with the rest of the
training state (:mod:`gpunn.persistence.training_state`).
"""

from __future__ import annotations

import numpy as np

from gpunn import distributed, run_state
from gpunn.callbacks import ModelCheckpoint
from gpunn.errors import ArgumentError, CheckpointError
from gpunn.persistence import training_state

__all__ = ["FitLoop", "ModelCheckpoint"]


class FitLoop:
    """The position of one ``fit`` call, read and restored by checkpoints.

    Args:
        model: the model being trained (``model._loop`` is set to this loop).
        callbacks: the run's callbacks, whose state checkpoints save.
        n_samples, batch_size, shuffle, accumulate_steps: the run's settings; a
            checkpoint taken mid-epoch resumes only with the same ones.
        source: the :mod:`gpunn.data` source of the batches, which draws each
            epoch's order (a permutation of the rows for arrays, of the chunks and
            rows in them for a memory-mapped array) and adds its settings (the
            chunk's rows; an iterable's ``steps_per_epoch``) to the config. None:
            in-memory rows. Default: None.
        initial_epoch: the epoch to start at (``fit(initial_epoch=...)``).
    """

    def __init__(
        self,
        model,
        callbacks,
        n_samples,
        batch_size,
        shuffle,
        accumulate,
        source=None,
        initial_epoch: int = 0,
    ):
        self.model, self.callbacks, self.source = model, list(callbacks), source
        self.config = {
            "n_samples": n_samples,
            "batch_size": batch_size,
            "shuffle": bool(shuffle),
            "accumulate_steps": accumulate,
        }
        if source is not None:
            self.config.update(source.loop_config())
        self.epoch, self.batch = initial_epoch, 0  # epoch in progress, batches done
        self.epoch_rng = None
        self.totals = self.accumulator = None
        self._saved = None  # a resumed mid-epoch position, used by start_epoch
        model._loop = self

    # ------------------------------------------------------------ the fit loop
    def epochs(self, total: int) -> range:
        """The epochs left to run: from the resumed one to ``total``. A checkpoint
        written after a callback stopped training resumes too (stopping ends one
        ``fit`` call, not the run)."""
        return range(self.epoch, total)

    def start_epoch(self, totals, accumulator):
        """``(first batch, permutation or None)`` for the epoch in progress: a fresh
        permutation from the model's generator, or on a resumed epoch the same one
        again, with the totals and accumulated gradient it had reached."""
        self.totals, self.accumulator = totals, accumulator
        rng, saved, self._saved = self.model.rng, self._saved, None
        if saved is not None:
            rng.bit_generator.state = saved["epoch_rng"]
        self.epoch_rng = rng.bit_generator.state
        order = self._draw(rng) if self.config["shuffle"] else None
        if saved is None:
            self.batch = 0
            return 0, order
        rng.bit_generator.state = saved["rng"]
        self._restore_totals(saved)
        return self.batch, order

    def _draw(self, rng):
        if self.source is None:
            return rng.permutation(self.config["n_samples"])
        return self.source.draw_order(rng)

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

    def save(self, path, run: str | None = None) -> None:
        """Writes the training state (model, optimizer, generators, callbacks, this
        position) to ``path`` atomically, marked with the writer's ``run`` id. In a
        data-parallel run every rank calls it (the state gathers each rank's
        generators); rank 0 writes. ValueError, nothing written, when the
        parameters, optimizer state or layer state hold NaN or infinity: resuming
        would refuse the file, and keep_last would prune good ones for it."""
        states = callback_states(self.callbacks)
        tensors, state, model_json = run_state.capture(self.model, states, self)
        bad = run_state.non_finite(self.model, tensors)
        if bad:
            raise ValueError(
                f"cannot write checkpoint {path}: {bad} contain NaN or infinity "
                "(fit(resume_from=...) would refuse it); nothing is written"
            )
        if distributed.is_primary():
            training_state.write(path, tensors, state, model_json, run)

    def resume(self, path, epochs: int, initial_epoch: int | None = None) -> None:
        """Restores the model, optimizer, generators and callbacks from the
        checkpoint at ``path`` and moves this loop to its position. CheckpointError,
        with nothing changed, when it does not fit (model, optimizer, dtype, or a
        mid-epoch position with other data size, batch size, shuffle, accumulation
        or data source); ValueError, nothing changed, when ``epochs`` (the total) is
        not beyond the checkpoint's epoch, which would train nothing, or when
        ``initial_epoch`` (given, not 0) is not the checkpoint's epoch."""
        tensors, state = training_state.read(path)
        restore = run_state.Restore(self.model, tensors, state, path)
        loop = restore.loop
        if loop is not None:
            self._check_position(loop, restore.loop_tensors, path)
            _check_epochs_left(loop, epochs, path)
            _check_initial_epoch(loop, initial_epoch, path)
        matched = _matched(self.callbacks, restore.callbacks)
        undo_callbacks = _set_callback_states(matched, path)
        try:
            restore.apply()
        except BaseException:
            undo_callbacks()
            raise
        if loop is None:
            return
        self.epoch, self.batch = loop["epoch"], loop["batch"]
        if self.batch > 0:
            self._saved = {**loop, "rng": self.model.rng.bit_generator.state}
            self._saved["tensors"] = restore.loop_tensors

    def _check_position(self, loop: dict, tensors: dict, path) -> None:
        """CheckpointError, before anything is restored, unless this fit can go on
        from the saved position: mid-epoch, with the same settings, and running
        totals shaped as this model's (the schema has checked the types)."""
        if loop["batch"] == 0:
            return
        saved, ours = loop["config"], self.config
        keys = [*ours, *(key for key in saved if key not in ours)]
        mismatched = [
            f"loop.{key}: checkpoint {saved.get(key)}, this fit {ours.get(key)}"
            for key in keys
            if saved.get(key) != ours.get(key)
        ]
        mismatched += _loop_tensor_problems(self.model, loop, tensors)
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


def _loop_tensor_problems(model, loop: dict, tensors: dict) -> list[str]:
    """What is wrong with a mid-epoch checkpoint's ``loop.*`` tensors for this
    model: the losses ``(batch,)``, one stats tensor per metric ``(batch, *row)``
    with the row this model's metric gives, the accumulated gradient over the
    arena exactly when the position holds one, nothing else."""
    batch, metrics = loop["batch"], model.metrics
    expected = {"loop.losses": (batch,)}
    rows = _stat_rows(model)
    for i in range(len(metrics)):
        found = tensors.get(f"loop.stats.{i}")
        row = rows[i] if rows else getattr(found, "shape", (0, 0))[1:]
        expected[f"loop.stats.{i}"] = (batch, *row)
    if loop["accumulated"] is not None:
        expected["loop.accumulator"] = (model.arena.size,)
    problems = [
        f"{key}: checkpoint {_described(tensors.get(key))}, model {shape}"
        for key, shape in expected.items()
        if key not in tensors
        or tensors[key].shape != shape
        or tensors[key].dtype.kind not in "fiu"
    ]
    problems += [f"{key}: unexpected" for key in sorted(set(tensors) - set(expected))]
    return problems


def _stat_rows(model) -> list | None:
    """The shape of one batch's statistics for each metric, from a one-row batch
    of zeros (the metrics are prepared by fit); None when the loss takes no such
    batch, and then only the batch count is checked."""
    backend = model.backend
    try:
        outputs = backend.xp.zeros((1, model.output_dim), model.dtype)
        labels = model.loss.prepare_targets(np.zeros(1), model.output_dim, model.dtype)
        targets = backend.asarray(labels)
        stats = [m.batch_stats(backend, outputs, targets) for m in model.metrics]
    except (ValueError, TypeError):
        return None
    return [tuple(np.shape(s)) for s in stats]


def _described(array) -> str:
    return "missing" if array is None else f"{array.dtype} {array.shape}"


def _check_epochs_left(loop: dict, epochs: int, path) -> None:
    """ValueError unless a fit of ``epochs`` in total has epochs left to run from
    the checkpoint's position."""
    if epochs > loop["epoch"]:
        return
    partial = f" and {loop['batch']} batches of the next" if loop["batch"] else ""
    raise ValueError(
        f"epochs={epochs} trains nothing: the checkpoint {path} has completed "
        f"{loop['epoch']} epoch(s){partial}, and epochs counts them (as Keras' "
        f"initial_epoch); pass epochs > {loop['epoch']} to train on"
    )


def _check_initial_epoch(loop: dict, initial_epoch, path) -> None:
    """ValueError when ``fit(initial_epoch=...)`` names another epoch than the
    checkpoint's (0 or None: the checkpoint decides)."""
    if not initial_epoch or initial_epoch == loop["epoch"]:
        return
    raise ArgumentError(
        f"initial_epoch={initial_epoch} but the checkpoint {path} resumes at epoch "
        f"{loop['epoch']}; leave initial_epoch at 0 (the checkpoint sets it) or "
        "pass the checkpoint's epoch"
    )


# ------------------------------------------------------------------ callbacks
def callback_states(callbacks) -> dict:
    """``{key: state}`` of the stateful callbacks (those whose ``get_state`` is not
    None), keyed by their ``state_key`` (``#2``, ``#3``... for later ones with the
    same key)."""
    return {key: state for key, _, state in _keyed(callbacks)}


def _keyed(callbacks) -> list:
    """``[(key, callback, state)]`` of the stateful callbacks."""
    keyed, seen = [], {}
    for callback in callbacks:
        state = callback.get_state()
        if state is None:
            continue  # stateless
        key = callback.state_key
        seen[key] = seen.get(key, 0) + 1
        keyed.append((key if seen[key] == 1 else f"{key}#{seen[key]}", callback, state))
    return keyed


def _matched(callbacks, saved: dict) -> list:
    """``[(callback, saved state)]`` for the callbacks of this run whose key is in
    the checkpoint (others start afresh; saved states without a callback are unused).
    """
    return [(cb, saved[key]) for key, cb, _ in _keyed(callbacks) if key in saved]


def _set_callback_states(matched: list, path):
    """Sets each saved state; returns a function that undoes them. On a refused
    state, undoes the others and raises CheckpointError naming the callback."""
    done = []

    def undo() -> None:
        for callback, state, flag in reversed(done):
            callback.set_state(state)
            callback._restored = flag

    for callback, state in matched:
        previous = (callback, callback.get_state(), callback._restored)
        try:
            callback.set_state(state)
        except (ValueError, TypeError, KeyError) as exc:
            undo()
            name = type(callback).__name__
            raise CheckpointError(f"{path}: state of callback {name}: {exc}") from exc
        done.append(previous)
    return undo
