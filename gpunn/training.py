"""The training loop behind ``Sequential.fit`` and ``evaluate``.

The dataset is moved to the backend once; each epoch draws one permutation from the
model's generator, copies it to the device once, and gathers each batch there. Batch
losses and metric sums stay on the device and are read once per epoch (and when a
progress bar redraws). The one value read each step is the finite check's flag
(:mod:`gpunn.faults`); with ``model.check_finite = False`` a GPU step never waits.
"""

from __future__ import annotations

import numpy as np

from gpunn import distributed, faults
from gpunn.callbacks import CallbackList, History
from gpunn.checkpointing import FitLoop
from gpunn.checks import check_bool, check_int, check_path, check_real
from gpunn.errors import ArgumentError, ArgumentTypeError
from gpunn.progress import Progress

__all__ = ["History", "evaluate", "fit"]


def check_batch_size(batch_size) -> int:
    return check_int("batch_size", batch_size, 1)


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


class _Totals:
    """Device-side batch losses and metric statistics of one pass, read on demand."""

    def __init__(self, model, dp=None):
        self.model, self.dp, self.losses, self.sizes = model, dp, [], []
        self.stats = [[] for _ in model.metrics]

    def add(self, loss, outputs, targets) -> None:
        backend = self.model.backend
        self.losses.append(loss)
        self.sizes.append(len(targets))
        for stats, metric in zip(self.stats, self.model.metrics):
            stats.append(metric.batch_stats(backend, outputs, targets))

    def logs(self, prefix: str = "", reduce: bool = True) -> dict:
        """The pass's mean loss and metrics; on several ranks (``reduce``, which
        every rank must call together) over all ranks' samples."""
        sums = self._sums()
        if reduce and self.dp is not None:
            flat = self.dp.reduce_host_(np.concatenate([s.ravel() for s in sums]))
            parts = np.split(flat, np.cumsum([s.size for s in sums])[:-1])
            sums = [part.reshape(s.shape) for part, s in zip(parts, sums)]
        loss_sum, n_samples = sums[0]
        logs = {prefix + "loss": float(loss_sum / n_samples) if n_samples else np.nan}
        for totals, metric in zip(sums[1:], self.model.metrics):
            logs[prefix + metric.name] = metric.result(totals, int(n_samples))
        return logs

    def local_logs(self) -> dict:
        """This rank's running logs, for the progress bar (no collective)."""
        return self.logs(reduce=False)

    def _sums(self) -> list:
        """``[(loss * size summed, samples), metric totals...]`` as float64 arrays."""
        backend, stack = self.model.backend, self.model.backend.xp.stack
        host = lambda arrays: backend.to_numpy(stack(arrays)).astype(np.float64)
        sizes = np.asarray(self.sizes, np.float64)
        loss = float(host(self.losses) @ sizes) if self.losses else 0.0
        sums = [np.array([loss, sizes.sum()])]
        return sums + [host(stats).sum(axis=0) for stats in self.stats]

    def add_empty(self, targets) -> None:
        """Records a shard with no rows (a rank of a tiny batch): zero statistics of
        the right shapes, so the ranks' sums line up. ``targets``: 0 rows of them."""
        backend, model = self.model.backend, self.model
        outputs = backend.zeros((0, model.output_dim), model.dtype)
        self.add(backend.zeros((), model.dtype), outputs, targets)


def _split(model, data, validation_data, validation_split):
    """Returns (training data, validation data or None); data are (X, y, w) triples
    on the device, ``w`` None without sample weights."""
    validation_split = check_real(
        "validation_split", validation_split, 0, 1, hi_open=True
    )
    if validation_split and validation_data is not None:
        raise ArgumentError("pass validation_data or validation_split, not both")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(
            validation_data
        ) not in (
            2,
            3,
        ):
            raise ArgumentError(
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
        raise ArgumentError(
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
    shuffle = check_bool("shuffle", shuffle)
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ArgumentError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise ArgumentTypeError(
            f"callbacks must be a list of Callbacks, got {type(callbacks).__name__}"
        )
    if resume_from is not None:
        check_path("resume_from", resume_from)
    data = model._dataset(X, y, sample_weight)
    data, val = _split(model, data, validation_data, validation_split)
    dp = distributed.data_parallel(model)
    check_batches(model, len(data[0]), batch_size, 1 if dp is None else dp.size)
    _prepare_metrics(model, data[1])
    steps = -(-len(data[0]) // batch_size)
    if dp is not None and not dp.primary:
        verbose = 0  # rank 0 alone prints
    progress, history = Progress(verbose, epochs, steps), History()
    hooks = CallbackList([history, *(callbacks or ())], model)
    names = ["loss", *(metric.name for metric in model.metrics)]
    names += ["val_" + name for name in names] if val is not None else []
    names += list(_scaler_logs(model))
    hooks.check_arguments({"log_names": names})  # before anything changes
    model.stop_training = False
    model._discard_layer_state()  # left by forwards outside a step (gradcheck)
    loop = FitLoop(
        model, hooks.callbacks, len(data[0]), batch_size, shuffle, accumulate_steps
    )
    if dp is not None:
        dp.start()  # rank 0's state everywhere, before a resume replaces it
    if resume_from is not None:
        loop.resume(resume_from, epochs)
    hooks.on_train_begin({"log_names": names})
    for epoch in loop.epochs(epochs):
        if loop.batch == 0:  # else a resumed epoch, begun before the checkpoint
            hooks.on_epoch_begin(epoch)
        progress.start_epoch(epoch + 1)
        logs = _train_epoch(
            model, data, batch_size, shuffle, accumulate_steps, progress, hooks
        )
        if dp is not None:
            dp.end_epoch(epoch)
        if val is not None:
            logs.update(evaluate(model, *val, max(batch_size, 1024), "val_"))
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


class _Accumulator:
    """Sums ``batch size * gradient`` over a group of batches, then steps once on the
    sum divided by the group's samples: the gradient of one large batch. ``check``
    (a :class:`~gpunn.faults.StepCheck`) sees the group's summed loss and averaged
    gradient before its step. On several ranks (``dp``) each sums its shards and
    one all-reduce per group (not per batch) gives the group's gradient."""

    def __init__(self, model, steps: int, check=None, dp=None):
        self.model, self.steps, self.check, self.dp = model, steps, check, dp
        self.buffer = model.arena.zeros_like_params()
        self.batches = 0
        self.total = 0  # the group's samples (over all ranks)
        self.loss = None  # the group's summed batch losses (device), for the check

    def add(self, n: int, loss=None, n_global: int | None = None) -> None:
        if loss is not None and n:
            self.loss = loss if self.loss is None else self.loss + loss
        xp, grads = self.model.backend.xp, self.model.arena.grads
        if self.batches == 0:
            xp.multiply(grads, n, out=self.buffer)
        elif n:
            self.buffer += grads * n
        self.batches += 1
        self.total += n if n_global is None else n_global
        if self.batches == self.steps:
            self.flush()

    def flush(self) -> None:
        if self.batches == 0:
            return
        xp, dp, loss = self.model.backend.xp, self.dp, self.loss
        xp.divide(self.buffer, self.total, out=self.model.arena.grads)
        if dp is not None:
            dp.engine.allreduce_(self.model.arena.grads)
            loss = dp.reduce_loss(loss, 1, 1)  # NaN on any rank reaches every rank
        self.model._apply_step(loss, self.check, self.total, self.batches)
        self.batches = self.total = 0
        self.loss = None


def _prepare_metrics(model, targets) -> None:
    for metric in model.metrics:
        metric.prepare(model.backend, targets)


def _train_epoch(model, data, batch_size, shuffle, accumulate_steps, progress, hooks):
    backend, n = model.backend, len(data[0])
    dp = distributed.active(model)
    check = faults.StepCheck(model, hooks.callbacks, model._loop.epoch)
    accumulator = (
        _Accumulator(model, accumulate_steps, check, dp)
        if accumulate_steps > 1
        else None
    )
    totals = _Totals(model, dp)
    # the loop draws the permutation (shuffle); a resumed epoch starts mid-way
    first, order = model._loop.start_epoch(totals, accumulator)
    order = None if order is None else backend.asarray(order)
    for step, start in enumerate(range(first * batch_size, n, batch_size), first + 1):
        stop = min(start + batch_size, n)
        if dp is not None:  # this rank's shard of the global batch
            lo, hi = dp.shard(stop - start)
            start, stop, size = start + lo, start + hi, stop - start
        if order is None:
            xb, yb, wb = (None if a is None else a[start:stop] for a in data)
        else:
            index = order[start:stop]
            xb, yb, wb = (
                None if a is None else backend.take_rows(a, index) for a in data
            )
        hooks.on_train_batch_begin(step - 1, {"size": stop - start})
        check.batch = step
        if dp is not None:
            loss = _data_parallel_batch(
                model, dp, (xb, yb, wb), size, check, accumulator, totals
            )
        else:
            if accumulator is None:
                loss, outputs = model._train_batch(xb, yb, wb, check)
            else:
                loss, outputs = model._gradients(xb, yb, wb)
                accumulator.add(stop - start, loss)
            totals.add(loss, outputs, yb)
        model._loop.batch = step
        hooks.on_train_batch_end(step - 1, {"size": stop - start, "loss": loss})
        progress.batch(step, totals.local_logs)
        if model.stop_training:
            return totals.logs()
    if accumulator is not None:
        accumulator.flush()
    return totals.logs()


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


def evaluate(model, X, y, w, batch_size, prefix="") -> dict:
    """Mean loss (regularization penalties included) and metrics over device data
    ``(X, y, w)`` in eval mode. On several ranks each evaluates its contiguous
    share of the rows and the sums are reduced (every rank must call it)."""
    batch_size = check_batch_size(batch_size)
    dp = distributed.data_parallel(model)
    _prepare_metrics(model, y)
    lo, hi = (0, len(X)) if dp is None else dp.shard(len(X))
    totals = _Totals(model, dp)
    if lo == hi:
        totals.add_empty(y[:0])
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
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
