"""Passes without updates: ``evaluate`` (mean loss and metrics) and ``predict`` over
any :mod:`gpunn.data` source. Arrays are evaluated in slices of the device data; a
memory-mapped array or an iterable batch by batch as it is read."""

from __future__ import annotations

import warnings

import numpy as np

from gpunn import distributed, faults
from gpunn.checks import check_int
from gpunn.totals import Totals

__all__ = ["evaluate", "evaluate_source", "predict_source", "prepare_metrics"]


def check_batch_size(batch_size) -> int:
    return check_int("batch_size", batch_size, 1)


def prepare_metrics(model, targets) -> None:
    """Lets each metric fix its constants from a dataset's targets (R2's center);
    None (an iterable): each metric prepares from its first batch."""
    if targets is None:
        return
    for metric in model.metrics:
        metric.prepare(model.backend, targets)


def evaluate(model, X, y, w, batch_size, prefix="") -> dict:
    """Mean loss (regularization penalties included) and metrics over device data
    ``(X, y, w)`` in eval mode. On several ranks each evaluates its contiguous
    share of the rows and the sums are reduced (every rank must call it)."""
    batch_size = check_batch_size(batch_size)
    dp = distributed.data_parallel(model)
    prepare_metrics(model, y)
    lo, hi = (0, len(X)) if dp is None else dp.shard(len(X))
    totals = Totals(model, dp)
    if lo == hi:
        totals.add_empty(y[:0])
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        wb = None if w is None else w[start:stop]
        loss, outputs = model._loss(X[start:stop], y[start:stop], wb, training=False)
        totals.add(loss, outputs, y[start:stop])
    return totals.logs(prefix)


def evaluate_source(model, source, batch_size, prefix="") -> dict:
    """:func:`evaluate` over any :mod:`gpunn.data` source: arrays as above; a
    memory-mapped array or an iterable batch by batch as it is read."""
    if source.kind == "array":
        return evaluate(model, *source.data, batch_size, prefix)
    batch_size = check_batch_size(batch_size)
    dp = distributed.data_parallel(model)
    prepare_metrics(model, source.first_targets())
    totals = Totals(model, dp)
    if dp is not None:  # a memory-mapped array: this rank's contiguous share
        lo, hi = dp.shard(source.n_samples)
        if lo == hi:
            totals.add_empty(source.first_targets()[:0])
            return totals.logs(prefix)
        source = source.rows(lo, hi)
    batches = source.batches(None, 0, batch_size)
    try:
        for xb, yb, wb, _ in batches:
            loss, outputs = model._loss(xb, yb, wb, training=False)
            totals.add(loss, outputs, yb)
    finally:
        batches.close()
    if not totals.sizes:
        warnings.warn(
            f"{prefix or 'the '}data gave no batch to evaluate: its logs are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    return totals.logs(prefix)


FLUSH_BYTES = 64 * 2**20  # device outputs gathered before one copy to the host


def predict_source(model, source, batch_size) -> np.ndarray:
    """``predict`` over a memory-mapped array or an iterable: outputs ``(n,
    outputs)`` on the host, copied there in pieces of about :data:`FLUSH_BYTES`."""
    backend, host, pending = model.backend, [], []
    row_bytes = model.output_dim * model.dtype.itemsize
    batches = source.batches(None, 0, batch_size)
    try:
        for xb, *_ in batches:
            try:
                out = model.forward(xb)
                pending.append(out.copy() if out is xb else out)  # xb is reused
            except backend.out_of_memory_errors as exc:
                raise faults.out_of_memory(model, exc, len(xb), "prediction") from exc
            if sum(len(p) for p in pending) * row_bytes >= FLUSH_BYTES:
                host.append(backend.to_numpy(backend.xp.concatenate(pending)))
                pending = []
    finally:
        batches.close()
    if pending:
        host.append(backend.to_numpy(backend.xp.concatenate(pending)))
    if not host:
        return np.zeros((0, model.output_dim), model.dtype)
    return np.concatenate(host)
