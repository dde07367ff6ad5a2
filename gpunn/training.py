"""The training loop behind ``Sequential.fit`` and ``evaluate``.

The dataset is moved to the backend once; each epoch draws one permutation from the
model's generator, copies it to the device once, and gathers each batch there. Batch
losses and metric sums stay on the device and are read once per epoch (and when a
progress bar redraws). The one value read each step is the finite check's flag
(:mod:`gpunn.faults`); with ``model.check_finite = False`` a GPU step never waits.
"""

from __future__ import annotations

import numpy as np

from gpunn import faults
from gpunn.callbacks import CallbackList, History
from gpunn.checkpointing import FitLoop
from gpunn.checks import check_int, check_real
from gpunn.progress import Progress

__all__ = ["History", "evaluate", "fit"]


def check_batch_size(batch_size) -> int:
    return check_int("batch_size", batch_size, 1)


def check_batches(model, n: int, batch_size: int) -> None:
    """Raises ValueError, before any update, when a training batch of ``n`` samples
    cut into ``batch_size`` pieces would be smaller than a layer accepts (BatchNorm
    cannot train on one sample)."""
    layer = max(model.layers, key=lambda layer: layer.min_train_batch)
    need = layer.min_train_batch
    smallest = min(batch_size, n) if n % batch_size == 0 else n % batch_size
    if smallest < need:
        raise ValueError(
            f"batch_size={batch_size} with {n} training samples leaves a batch of "
            f"{smallest} sample(s), but layer {layer.name} ({type(layer).__name__}) "
            f"needs at least {need} per batch in training; choose another batch_size"
        )


class _Totals:
    """Device-side batch losses and metric statistics of one pass, read on demand."""

    def __init__(self, model):
        self.model, self.losses, self.sizes = model, [], []
        self.stats = [[] for _ in model.metrics]

    def add(self, loss, outputs, targets) -> None:
        backend = self.model.backend
        self.losses.append(loss)
        self.sizes.append(len(targets))
        for stats, metric in zip(self.stats, self.model.metrics):
            stats.append(metric.batch_stats(backend, outputs, targets))

    def logs(self, prefix: str = "") -> dict:
        backend = self.model.backend
        stack = backend.xp.stack
        losses = backend.to_numpy(stack(self.losses)).astype(np.float64)
        logs = {prefix + "loss": float(losses @ self.sizes / sum(self.sizes))}
        n_samples = sum(self.sizes)
        for stats, metric in zip(self.stats, self.model.metrics):
            totals = backend.to_numpy(stack(stats)).astype(np.float64).sum(axis=0)
            logs[prefix + metric.name] = metric.result(totals, n_samples)
        return logs


def _split(model, data, validation_data, validation_split):
    """Returns (training data, validation data or None); data are (X, y, w) triples
    on the device, ``w`` None without sample weights."""
    validation_split = check_real(
        "validation_split", validation_split, 0, 1, hi_open=True
    )
    if validation_split and validation_data is not None:
        raise ValueError("pass validation_data or validation_split, not both")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(
            validation_data
        ) not in (
            2,
            3,
        ):
            raise ValueError(
                "validation_data must be (X_val, y_val) or (X_val, y_val, "
                f"sample_weight_val), got {type(validation_data).__name__}"
            )
        names = ("validation_data[0]", "validation_data[1]", "validation_data[2]")
        return data, model._dataset(*validation_data, names=names)
    if not validation_split:
        return data, None
    n = len(data[0])
    cut = n - int(n * validation_split)  # the last samples, as in Keras
    if cut in (0, n):
        raise ValueError(
            f"validation_split={validation_split} leaves no samples for training or "
            f"validation with {n} samples"
        )
    head = tuple(None if a is None else a[:cut] for a in data)
    tail = tuple(None if a is None else a[cut:] for a in data)
    return head, tail


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
    callbacks=None,
    sample_weight=None,
    accumulate_steps=1,
    resume_from=None,
) -> History:
    """Trains ``model`` for ``epochs`` passes; see :meth:`gpunn.Sequential.fit`.

    Batches are ``batch_size`` samples (the last may be smaller, and is used); with
    ``shuffle`` the order is a fresh permutation from the model's generator each epoch.
    ``validation_split`` holds out the *last* fraction of the data before shuffling.
    With ``accumulate_steps=k`` the gradients of ``k`` consecutive batches are
    averaged (weighted by batch size, so the update equals one batch of all their
    samples) before one optimizer step; a last, shorter group steps too. (A loss
    that normalizes each batch by something other than its size, cross-entropy with
    ``class_weight``, gives the size-weighted mean of the batch gradients instead.)
    Each optimizer step (each group's, when accumulating) is checked for a NaN or
    infinite loss or gradient before its update (:mod:`gpunn.faults`).
    With ``resume_from`` the checkpoint's state is restored first and training goes
    on from its epoch and batch up to ``epochs`` in total (:mod:`gpunn.checkpointing`).
    """
    epochs, batch_size = check_int("epochs", epochs, 1), check_batch_size(batch_size)
    accumulate_steps = check_int("accumulate_steps", accumulate_steps, 1)
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            f"callbacks must be a list of Callbacks, got {type(callbacks).__name__}"
        )
    data = model._dataset(X, y, sample_weight)
    data, val = _split(model, data, validation_data, validation_split)
    check_batches(model, len(data[0]), batch_size)
    steps = -(-len(data[0]) // batch_size)
    progress, history = Progress(verbose, epochs, steps), History()
    hooks = CallbackList([history, *(callbacks or ())], model)
    model.stop_training = False
    loop = FitLoop(
        model, hooks.callbacks, len(data[0]), batch_size, shuffle, accumulate_steps
    )
    if resume_from is not None:
        loop.resume(resume_from)
    names = ["loss", *(metric.name for metric in model.metrics)]
    names += ["val_" + name for name in names] if val is not None else []
    hooks.on_train_begin({"log_names": names})
    for epoch in loop.epochs(epochs):
        if loop.batch == 0:  # else a resumed epoch, begun before the checkpoint
            hooks.on_epoch_begin(epoch)
        progress.start_epoch(epoch + 1)
        logs = _train_epoch(
            model, data, batch_size, shuffle, accumulate_steps, progress, hooks
        )
        if val is not None:
            logs.update(evaluate(model, *val, max(batch_size, 1024), "val_"))
        loop.end_epoch(epoch)
        hooks.on_epoch_end(epoch, logs)
        progress.end_epoch(logs)
        if model.stop_training:
            break
    hooks.on_train_end()
    return history


class _Accumulator:
    """Sums ``batch size * gradient`` over a group of batches, then steps once on the
    sum divided by the group's samples: the gradient of one large batch. ``check``
    (a :class:`~gpunn.faults.StepCheck`) sees the group's summed loss and averaged
    gradient before its step."""

    def __init__(self, model, steps: int, check=None):
        self.model, self.steps, self.check = model, steps, check
        self.buffer = model.arena.zeros_like_params()
        self.batches = self.samples = 0
        self.loss = None  # the group's summed batch losses (device), for the check

    def add(self, n: int, loss=None) -> None:
        if loss is not None:
            self.loss = loss if self.loss is None else self.loss + loss
        xp, grads = self.model.backend.xp, self.model.arena.grads
        if self.batches == 0:
            xp.multiply(grads, n, out=self.buffer)
        else:
            self.buffer += grads * n
        self.batches, self.samples = self.batches + 1, self.samples + n
        if self.batches == self.steps:
            self.flush()

    def flush(self) -> None:
        if self.batches == 0:
            return
        xp = self.model.backend.xp
        xp.divide(self.buffer, self.samples, out=self.model.arena.grads)
        self.model._apply_step(self.loss, self.check, self.samples, self.batches)
        self.batches = self.samples = 0
        self.loss = None


def _train_epoch(model, data, batch_size, shuffle, accumulate_steps, progress, hooks):
    backend, n = model.backend, len(data[0])
    check = faults.StepCheck(model, hooks.callbacks, model._loop.epoch)
    accumulator = (
        _Accumulator(model, accumulate_steps, check) if accumulate_steps > 1 else None
    )
    totals = _Totals(model)
    # the loop draws the permutation (shuffle); a resumed epoch starts mid-way
    first, order = model._loop.start_epoch(totals, accumulator)
    order = None if order is None else backend.asarray(order)
    for step, start in enumerate(range(first * batch_size, n, batch_size), first + 1):
        stop = min(start + batch_size, n)
        if order is None:
            xb, yb, wb = (None if a is None else a[start:stop] for a in data)
        else:
            index = order[start:stop]
            xb, yb, wb = (
                None if a is None else backend.take_rows(a, index) for a in data
            )
        hooks.on_train_batch_begin(step - 1, {"size": stop - start})
        check.batch = step
        if accumulator is None:
            loss, outputs = model._train_batch(xb, yb, wb, check)
        else:
            loss, outputs = model._gradients(xb, yb, wb)
            accumulator.add(stop - start, loss)
        totals.add(loss, outputs, yb)
        model._loop.batch = step
        hooks.on_train_batch_end(step - 1, {"size": stop - start, "loss": loss})
        progress.batch(step, totals.logs)
        if model.stop_training:
            return totals.logs()
    if accumulator is not None:
        accumulator.flush()
    return totals.logs()


def evaluate(model, X, y, w, batch_size, prefix="") -> dict:
    """Mean loss (regularization penalties included) and metrics over device data
    ``(X, y, w)`` in eval mode."""
    batch_size = check_batch_size(batch_size)
    totals = _Totals(model)
    for start in range(0, len(X), batch_size):
        stop = start + batch_size
        wb = None if w is None else w[start:stop]
        loss, outputs = model._loss(X[start:stop], y[start:stop], wb, training=False)
        totals.add(loss, outputs, y[start:stop])
    return totals.logs(prefix)


def summary_table(model, print_fn=print) -> str:
    """The text of ``Sequential.summary``."""
    rows = [("Layer (type)", "Output", "Params", "FLOPs/sample")]
    counts = {}
    if model.built:
        for slot in model.arena.slots:
            counts[slot.owner] = counts.get(slot.owner, 0) + slot.size
    for layer in model.layers:
        built = layer.n_out is not None
        rows.append(
            (
                f"{layer.name or '?'} ({type(layer).__name__})",
                f"(batch, {layer.n_out})" if built else "?",
                f"{counts.get(layer.name, 0):,}" if built else "?",
                f"{layer.flops_per_sample():,}" if built else "?",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    rule = "-" * len(lines[0])
    lines = [rule, lines[0], rule, *lines[1:], rule]
    if model.built:
        forward = sum(layer.flops_per_sample() for layer in model.layers)
        lines += [
            (
                f"Total params: {model.count_params():,} "
                f"({model.count_params() * model.dtype.itemsize / 2**20:.2f} MiB "
                f"{model.dtype.name})"
            ),
            f"Forward FLOPs/sample: {forward:,} (a training step is about 3x)",
            f"Backend: {model.backend.name}",
        ]
    else:
        lines.append("Not built: pass input_dim or call fit to build the model.")
    text = "\n".join(lines)
    print_fn(text)
    return text
