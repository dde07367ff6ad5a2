"""The training loop behind ``Sequential.fit`` and ``evaluate``.

The dataset is moved to the backend once; each epoch draws one permutation from the
model's generator, copies it to the device once, and gathers each batch there. Batch
losses and metric sums stay on the device and are read once per epoch (and when a
progress bar redraws), so a GPU step never waits for the host.
"""

from __future__ import annotations

import numpy as np

from gpunn.checks import check_int, check_real
from gpunn.progress import Progress


class History:
    """Per-epoch results of ``fit``: ``history.history["loss"]``,
    ``["accuracy"]``, ``["val_loss"]``, ... and ``history.epoch`` (0-based)."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def check_batch_size(batch_size) -> int:
    return check_int("batch_size", batch_size, 1)


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


def _split(model, X, y, validation_data, validation_split):
    validation_split = check_real(
        "validation_split", validation_split, 0, 1, hi_open=True
    )
    if validation_split and validation_data is not None:
        raise ValueError("pass validation_data or validation_split, not both")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        val = model._dataset(
            *validation_data, "validation_data[0]", "validation_data[1]"
        )
        return X, y, val
    if not validation_split:
        return X, y, None
    cut = len(X) - int(len(X) * validation_split)  # the last samples, as in Keras
    if cut in (0, len(X)):
        raise ValueError(
            f"validation_split={validation_split} leaves no samples for training or "
            f"validation with {len(X)} samples"
        )
    return X[:cut], y[:cut], (X[cut:], y[cut:])


def fit(
    model, X, y, epochs, batch_size, shuffle, validation_data, validation_split, verbose
) -> History:
    """Trains ``model`` for ``epochs`` passes; see :meth:`gpunn.Sequential.fit`.

    Batches are ``batch_size`` samples (the last may be smaller, and is used); with
    ``shuffle`` the order is a fresh permutation from the model's generator each epoch.
    ``validation_split`` holds out the *last* fraction of the data before shuffling.
    """
    epochs, batch_size = check_int("epochs", epochs, 1), check_batch_size(batch_size)
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    X, y = model._dataset(X, y)
    X, y, val = _split(model, X, y, validation_data, validation_split)
    steps = -(-len(X) // batch_size)
    progress, history = Progress(verbose, epochs, steps), History()
    for epoch in range(epochs):
        progress.start_epoch(epoch + 1)
        logs = _train_epoch(model, X, y, batch_size, shuffle, progress)
        if val is not None:
            logs.update(evaluate(model, *val, max(batch_size, 1024), "val_"))
        history.append(epoch, logs)
        progress.end_epoch(logs)
    return history


def _train_epoch(model, X, y, batch_size, shuffle, progress) -> dict:
    backend, n = model.backend, len(X)
    order = backend.asarray(model.rng.permutation(n)) if shuffle else None
    totals = _Totals(model)
    for step, start in enumerate(range(0, n, batch_size), 1):
        stop = min(start + batch_size, n)
        if order is None:
            xb, yb = X[start:stop], y[start:stop]
        else:
            index = order[start:stop]
            xb, yb = backend.take_rows(X, index), backend.take_rows(y, index)
        loss, outputs = model._train_batch(xb, yb)
        totals.add(loss, outputs, yb)
        progress.batch(step, totals.logs)
    return totals.logs()


def evaluate(model, X, y, batch_size, prefix="") -> dict:
    """Mean loss and metrics over device data ``(X, y)`` in eval mode."""
    batch_size = check_batch_size(batch_size)
    totals = _Totals(model)
    for start in range(0, len(X), batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        outputs = model.forward(xb, training=False)
        loss, _ = model.loss(model.backend, outputs, yb)
        totals.add(loss, outputs, yb)
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
