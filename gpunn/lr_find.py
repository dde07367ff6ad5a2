"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training
Neural Networks", section 3.3; popularized by fastai's ``lr_find``).

Train on successive minibatches while the learning rate grows exponentially from
``start`` to ``end``, record each batch's loss, stop once the smoothed loss has blown
up, then put the model back exactly as it was: parameters, layer state, optimizer state
and step count, learning rate, the model's random generator and the dropout/noise
layers' generators (on the CPU; CuPy does not expose its generators' state yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gpunn.checks import check_int, check_path, check_real
from gpunn.errors import ArgumentError
from gpunn.training import check_batch_size, check_batches


@dataclass
class LRFinderResult:
    """What :func:`lr_find` measured.

    Attributes:
        lrs: the learning rate of each recorded step.
        losses: each step's batch loss (before its update).
        smoothed: the bias-corrected exponential moving average of ``losses``.
        suggested_lr: the lr where the smoothed loss falls fastest (per decade of
            lr) before its minimum, ignoring the first tenth of the steps; None when
            too few steps lie in between.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggested_lr: float | None

    def plot(self, path=None, ax=None):
        """Plots the smoothed loss against the lr (log scale) with the suggestion
        marked; saves a PNG to ``path`` when given. Needs matplotlib (the ``plot``
        extra: ``pip install "gpunn[plot]"``). Returns the matplotlib Axes."""
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError(
                'lr_find plots need matplotlib: pip install "gpunn[plot]"'
            ) from exc
        if ax is None:  # a Figure of its own: pyplot's global state is not touched
            ax = Figure(figsize=(6, 4)).subplots()
        ax.plot(self.lrs, self.smoothed, label="smoothed loss")
        ax.plot(self.lrs, self.losses, alpha=0.3, label="batch loss")
        if self.suggested_lr is not None:
            ax.axvline(
                self.suggested_lr, color="red", linestyle="--", label="suggested"
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.legend()
        if path is not None:
            ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        return ax


def lr_find(
    model,
    X,
    y,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    batch_size: int = 32,
    smoothing: float = 0.98,
    divergence: float = 4.0,
    plot=None,
    sample_weight=None,
) -> LRFinderResult:
    """Runs the LR range test on a compiled model; see :meth:`Sequential.lr_find`."""
    start = check_real("start", start, lo=0, lo_open=True)
    end = check_real("end", end)
    if end <= start:
        raise ArgumentError(f"end must be > start ({start:g}), got {end:g}")
    steps = check_int("steps", steps, 2)
    batch_size = check_batch_size(batch_size)
    smoothing = check_real("smoothing", smoothing, 0, 1, hi_open=True)
    divergence = check_real("divergence", divergence, lo=1, lo_open=True)
    if plot is not None and not hasattr(plot, "write"):
        check_path("plot", plot)
    data = model._dataset(X, y, sample_weight)
    check_batches(model, len(data[0]), batch_size)
    saved = _save(model)
    try:
        with np.errstate(all="ignore"):  # the test drives the loss to overflow
            lrs, losses = _sweep(
                model, data, start, end, steps, batch_size, smoothing, divergence
            )
    finally:
        _load(model, saved)
    smoothed = _smooth(losses, smoothing)
    result = LRFinderResult(
        np.array(lrs), np.array(losses), smoothed, _suggest(np.array(lrs), smoothed)
    )
    if plot is not None:
        result.plot(plot)
    return result


def _sweep(model, data, start, end, steps, batch_size, smoothing, divergence):
    optimizer, n = model.optimizer, len(data[0])
    optimizer.lr_scale = 1.0
    lrs, losses, best, average, position, order = [], [], math.inf, 0.0, n, None
    for i in range(steps):
        if position >= n:  # a fresh permutation for each pass over the data
            order, position = model.backend.asarray(model.rng.permutation(n)), 0
        index = order[position : position + batch_size]
        position += batch_size
        batch = [None if a is None else model.backend.take_rows(a, index) for a in data]
        lr = start * (end / start) ** (i / (steps - 1))
        optimizer.lr = lr
        loss = float(model._train_batch(*batch)[0])
        lrs.append(lr)
        losses.append(loss)
        average = smoothing * average + (1 - smoothing) * loss
        smoothed = average / (1 - smoothing ** (i + 1))
        if not math.isfinite(smoothed) or smoothed > divergence * best:
            break
        best = min(best, smoothed)
    return lrs, losses


def _smooth(losses, smoothing) -> np.ndarray:
    out, average = [], 0.0
    for i, loss in enumerate(losses):
        average = smoothing * average + (1 - smoothing) * loss
        out.append(average / (1 - smoothing ** (i + 1)))
    return np.array(out)


def _suggest(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    """The lr of the steepest descent of the smoothed loss per decade of lr, between
    the first tenth of the steps (where the average is still settling) and the loss
    minimum."""
    finite = np.isfinite(smoothed)
    lrs, smoothed = lrs[finite], smoothed[finite]
    skip = len(smoothed) // 10
    stop = int(np.argmin(smoothed)) + 1
    if stop - skip < 3:
        return None
    slopes = np.gradient(smoothed[skip:stop], np.log10(lrs[skip:stop]))
    return float(lrs[skip + int(np.argmin(slopes))])


def _layer_generators(model) -> list:
    return [
        layer.generator
        for layer in model.layers
        if getattr(layer, "generator", None) is not None
    ]


def _save(model) -> dict:
    backend = model.backend
    return {
        "model": model._snapshot(),
        "optimizer": model.optimizer.snapshot(),
        "rng": model.rng.bit_generator.state,
        "layer_rngs": [backend.generator_state(g) for g in _layer_generators(model)],
    }


def _load(model, saved: dict) -> None:
    model._restore(saved["model"])
    model.optimizer.restore(saved["optimizer"])
    model.rng.bit_generator.state = saved["rng"]
    for generator, state in zip(_layer_generators(model), saved["layer_rngs"]):
        if state is not None:
            model.backend.set_generator_state(generator, state)
