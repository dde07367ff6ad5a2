"""The training loop behind ``Sequential.fit`` and ``evaluate``.

An epoch is a sequence of device batches (:mod:`gpunn.data`). In-memory data is moved
to the backend once; each epoch draws one permutation from the model's generator,
copies it to the device once, and gathers each batch there. A memory-mapped array or
an iterable of batches is read on a background thread and handed to the device by
the backend's prefetcher. Batch losses and metric sums stay on the device and are
read once per epoch (and when a progress bar redraws). The one value read each step
is the finite check's flag (:mod:`gpunn.faults`); with ``model.check_finite =
False`` a GPU step never waits.
"""

from __future__ import annotations

import warnings

from gpunn import data, distributed, faults
from gpunn.callbacks import CallbackList, History
from gpunn.checkpointing import FitLoop
from gpunn.checks import check_bool, check_int, check_path
from gpunn.errors import ArgumentError, ArgumentTypeError
from gpunn.evaluation import (
    check_batch_size,
    evaluate,
    evaluate_source,
    predict_source,
    prepare_metrics,
)
from gpunn.progress import Progress
from gpunn.summary import summary_table
from gpunn.totals import Accumulator, Totals

__all__ = [
    "History",
    "check_batch_size",
    "evaluate",
    "evaluate_source",
    "fit",
    "predict_source",
    "summary_table",
]


def check_steps(name: str, steps) -> int | None:
    return None if steps is None else check_int(name, steps, 1)


def check_batches(model, n: int, batch_size: int, ranks: int = 1) -> None:
    """Raises ValueError, before any update, when a training batch of ``n`` samples
    cut into ``batch_size`` pieces (each cut again into ``ranks`` shards) would be
    smaller than a layer accepts (BatchNorm cannot train on one sample)."""
    layer = max(model.layers, key=lambda layer: layer.min_train_batch)
    need = layer.min_train_batch
    smallest = min(batch_size, n) if n % batch_size == 0 else n % batch_size
    shard = max(smallest // ranks, 1)  # a rank given no rows skips the batch
    if shard < need:
        per = f" ({ranks} ranks: {shard} per rank)" if ranks > 1 else ""
        raise ArgumentError(
            f"batch_size={batch_size} with {n} training samples leaves a batch of "
            f"{smallest} sample(s){per}, but layer {layer.name} "
            f"({type(layer).__name__}) needs at least {need} per batch in training; "
            "choose another batch_size"
        )


def _check_settings(epochs, batch_size, accumulate_steps, shuffle, verbose, options):
    """The plain arguments of ``fit``, checked before any data is read."""
    epochs, batch_size = check_int("epochs", epochs, 1), check_batch_size(batch_size)
    accumulate_steps = check_int("accumulate_steps", accumulate_steps, 1)
    shuffle = check_bool("shuffle", shuffle)
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ArgumentError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    callbacks = options["callbacks"]
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise ArgumentTypeError(
            f"callbacks must be a list of Callbacks, got {type(callbacks).__name__}"
        )
    if options["resume_from"] is not None:
        check_path("resume_from", options["resume_from"])
    initial = check_int("initial_epoch", options["initial_epoch"], 0)
    if initial >= epochs and options["resume_from"] is None:
        raise ArgumentError(
            f"initial_epoch={initial} with epochs={epochs} trains nothing: epochs "
            "counts from 0, as in Keras; pass epochs > initial_epoch"
        )
    check_steps("steps_per_epoch", options["steps_per_epoch"])
    check_steps("validation_steps", options["validation_steps"])
    return epochs, batch_size, accumulate_steps, shuffle


def fit(
    model,
    X,
    y,
    *,
    epochs,
    batch_size,
    shuffle,
    validation_data,
    validation_split,
    verbose,
    **options,
) -> History:
    """Trains ``model`` for ``epochs`` passes; see :meth:`gpunn.Sequential.fit`.

    Batches are ``batch_size`` samples (the last may be smaller, and is used); with
    ``shuffle`` the order is a fresh permutation from the model's generator each epoch
    (for a memory-mapped array, of its chunks and of the rows in each chunk).
    ``validation_split`` holds out the *last* fraction of the data before shuffling.
    With ``accumulate_steps=k`` the gradients of ``k`` consecutive batches are
    averaged (weighted by batch size, so the update equals one batch of all their
    samples) before one optimizer step; a last, shorter group steps too. (A loss
    that normalizes each batch by something other than its size, cross-entropy with
    the loss's ``class_weight``, gives the size-weighted mean of the batch gradients
    instead.) Each optimizer step (each group's, when accumulating) is checked for a
    NaN or infinite loss or gradient before its update (:mod:`gpunn.faults`).
    With ``resume_from`` the checkpoint's state is restored first and training goes
    on from its epoch and batch up to ``epochs`` in total (:mod:`gpunn.checkpointing`).

    ``options``: callbacks, sample_weight, accumulate_steps, resume_from,
    class_weight, initial_epoch, steps_per_epoch, validation_steps (all given).
    """
    epochs, batch_size, accumulate, shuffle = _check_settings(
        epochs, batch_size, options["accumulate_steps"], shuffle, verbose, options
    )
    source = data.source_for(
        model,
        X,
        y,
        options["sample_weight"],
        steps=options["steps_per_epoch"],
        batch_size=batch_size,
        training=True,
        steps_name="steps_per_epoch",
    )
    source, val = data.split(
        model,
        source,
        validation_data,
        validation_split,
        options["validation_steps"],
        max(batch_size, 1024),
    )
    if options["class_weight"] is not None:
        source = data.with_class_weight(model, source, options["class_weight"])
    dp = distributed.data_parallel(model)
    streamed = source.kind == "iterable"
    if streamed and dp is not None:
        raise ArgumentError(
            "data-parallel training takes arrays or memory-mapped arrays (each rank "
            "trains on its shard of every batch), not an iterable of batches"
        )
    if not streamed:
        check_batches(model, source.n_samples, batch_size, 1 if dp is None else dp.size)
    prepare_metrics(model, source.first_targets())
    if dp is not None and not dp.primary:
        verbose = 0  # rank 0 alone prints
    progress, history = Progress(verbose, epochs, source.steps(batch_size)), History()
    hooks = CallbackList([history, *(options["callbacks"] or ())], model)
    names = ["loss", *(metric.name for metric in model.metrics)]
    names += ["val_" + name for name in names] if val is not None else []
    names += list(_scaler_logs(model))
    hooks.check_arguments({"log_names": names})  # before anything changes
    model.stop_training = False
    model._discard_layer_state()  # left by forwards outside a step (gradcheck)
    loop = FitLoop(
        model,
        hooks.callbacks,
        None if streamed else source.n_samples,
        None if streamed else batch_size,
        shuffle and not streamed,
        accumulate,
        source,
        options["initial_epoch"],
    )
    if dp is not None:
        dp.start()  # rank 0's state everywhere, before a resume replaces it
    if options["resume_from"] is not None:
        loop.resume(options["resume_from"], epochs, options["initial_epoch"])
    hooks.on_train_begin({"log_names": names})
    for epoch in loop.epochs(epochs):
        if loop.batch == 0:  # else a resumed epoch, begun before the checkpoint
            hooks.on_epoch_begin(epoch)
        progress.start_epoch(epoch + 1, source.steps(batch_size))
        logs = _train_epoch(model, source, batch_size, accumulate, progress, hooks)
        if logs is None:  # an iterable with nothing left
            break
        if dp is not None:
            dp.end_epoch(epoch)
        if val is not None:
            logs.update(evaluate_source(model, val, max(batch_size, 1024), "val_"))
        logs.update(_scaler_logs(model))
        loop.end_epoch(epoch)
        hooks.on_epoch_end(epoch, logs)
        progress.end_epoch(logs)
        if model.stop_training:
            break
    hooks.on_train_end()
    return history


def _scaler_logs(model) -> dict:
    """The loss scale and the steps skipped so far, when the model scales its loss
    (mixed_float16): logged each epoch beside the loss."""
    scaler = model.loss_scaler
    if scaler is None:
        return {}
    return {"loss_scale": scaler.scale, "skipped_steps": scaler.skipped_steps}


def _train_epoch(model, source, batch_size, accumulate_steps, progress, hooks):
    """Trains one epoch (from the loop's position); returns its logs, or None when
    an iterable gave no batch at all (training then stops, with a warning)."""
    dp = distributed.active(model)
    check = faults.StepCheck(model, hooks.callbacks, model._loop.epoch)
    accumulator = (
        Accumulator(model, accumulate_steps, check, dp)
        if accumulate_steps > 1
        else None
    )
    totals = Totals(model, dp)
    # the loop draws the order (shuffle); a resumed epoch starts mid-way
    first, order = model._loop.start_epoch(totals, accumulator)
    batches = source.batches(order, first, batch_size, dp)
    step = first
    try:
        for step, (xb, yb, wb, size) in enumerate(batches, first + 1):
            hooks.on_train_batch_begin(step - 1, {"size": len(xb)})
            check.batch = step
            loss = _train_batch(model, (xb, yb, wb), size, check, accumulator, totals)
            model._loop.batch = step
            hooks.on_train_batch_end(step - 1, {"size": len(xb), "loss": loss})
            progress.batch(step, totals.local_logs)
            if model.stop_training:
                return totals.logs()
    finally:
        batches.close()
    if accumulator is not None:
        accumulator.flush()
    if getattr(source, "ran_out", False):
        _warn_ran_out(model, source)
        if step == first:
            return None
    return totals.logs()


def _train_batch(model, batch, size, check, accumulator, totals):
    """One batch: its update (or its share of an accumulated one); returns the
    batch's loss (the global batch's on several ranks)."""
    xb, yb, wb = batch
    dp = distributed.active(model)
    if dp is not None:
        return _data_parallel_batch(model, dp, batch, size, check, accumulator, totals)
    if accumulator is None:
        loss, outputs = model._train_batch(xb, yb, wb, check)
    else:
        loss, outputs = model._gradients(xb, yb, wb)
        accumulator.add(len(xb), loss)
    totals.add(loss, outputs, yb)
    return loss


def _warn_ran_out(model, source) -> None:
    """An iterable ran out of batches before ``steps_per_epoch`` (or gave none):
    Keras' rule, training stops with a warning (the epoch ends if it trained)."""
    steps = source.steps_per_epoch
    wanted = f"steps_per_epoch={steps} batches" if steps else "a batch"
    warnings.warn(
        f"the training data ran out of batches (an epoch wanted {wanted}); "
        "training stops. Pass an iterable that yields steps_per_epoch * epochs "
        "batches, or one that can be iterated again each epoch (a DataLoader, "
        "an object whose __iter__ starts over)",
        RuntimeWarning,
        stacklevel=5,
    )
    model.stop_training = True


def _data_parallel_batch(model, dp, batch, size, check, accumulator, totals):
    """One rank's part of a global batch of ``size`` rows; returns the global batch's
    loss (the same on every rank)."""
    xb, yb, wb = batch
    n = len(yb)
    if n:
        local, outputs = model._gradients(xb, yb, wb)
        totals.add(local, outputs, yb)
        local = faults.with_layer_state(model, local)  # one rank's bad state: all
    else:  # a batch smaller than the world: this rank has no rows
        local = None
        totals.add_empty(yb)
    if accumulator is not None:
        if not n:
            model.arena.grads[...] = 0
        accumulator.add(n, local, size)
        return dp.reduce_loss(local, n, size)
    loss = dp.reduce_loss(local, n, size)
    dp.reduce_gradients_(n, size)
    model._apply_step(loss, check, size)
    return loss
