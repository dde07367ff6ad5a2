"""Data-parallel scenarios, run by tests/test_distributed.py under ``mpiexec -n 2``
and, for the references, in one plain process.

``python tests/distributed_run.py OUT_DIR [scenario...]`` writes
``OUT_DIR/<scenario>.rank<r>.npz`` (weights, history) for each scenario.
"""

import json
import os
import sys

import numpy as np

import gpunn
from gpunn import optim
from gpunn.callbacks import Callback, CSVLogger, ModelCheckpoint
from gpunn.layers import BatchNorm, Dense, Dropout


def data(n=45, d=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.standard_normal((n, d)) + np.eye(3, d)[y] * 2
    return X, y


def mlp(dropout=False, batch_norm=False, seed=1):
    layers = [Dense(16, activation="tanh")]
    layers += [BatchNorm()] if batch_norm else []
    layers += [Dropout(0.3)] if dropout else []
    model = gpunn.Sequential([*layers, Dense(3)], 5, "float64", "cpu", seed=seed)
    model.compile("softmax_cross_entropy", optim.Adam(lr=0.01), metrics=["accuracy"])
    return model


def parity(out):
    """Uneven shards (45 rows, batches of 8: the last of 5), sample weights and a
    validation split of 9 rows (5 / 4 per rank)."""
    X, y = data()
    w = np.linspace(0.5, 1.5, len(X))
    model = mlp()
    history = model.fit(
        X, y, epochs=3, batch_size=8, sample_weight=w, validation_split=0.2, verbose=0
    )
    return model, history, {"evaluate": model.evaluate(X, y)["loss"]}


def accumulate(out):
    X, y = data()
    model = mlp()
    history = model.fit(X, y, epochs=2, batch_size=6, accumulate_steps=2, verbose=0)
    return model, history, {}


def tiny_batches(out):
    """Batches of one row on two ranks: one rank has no rows in every batch."""
    X, y = data(n=7)
    model = mlp()
    history = model.fit(X, y, epochs=2, batch_size=1, verbose=0)
    return model, history, {}


def noise_and_batch_norm(out):
    """Per-rank dropout masks and BatchNorm statistics: the weights stay equal."""
    X, y = data()
    model = mlp(dropout=True, batch_norm=True)
    history = model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    state = model.get_state()["batchnorm_1.running_mean"]
    return model, history, {"running_mean": state.tolist()}


def resume(out):
    """Checkpoints at each epoch (rank 0 writes); a new model resumes epoch 2 of 3 and
    ends bitwise where the uninterrupted run ended, dropout included."""
    X, y = data()
    path = os.path.join(out, "ckpt-{epoch}.safetensors")
    full = mlp(dropout=True)
    callbacks = [ModelCheckpoint(path), CSVLogger(os.path.join(out, "log.csv"))]
    full.fit(X, y, epochs=3, batch_size=8, callbacks=callbacks, verbose=0)
    again = mlp(dropout=True, seed=9)
    history = again.fit(
        X, y, epochs=3, batch_size=8, verbose=0, resume_from=path.format(epoch=1)
    )
    same = all(
        np.array_equal(a, b) for a, b in zip(full.get_weights(), again.get_weights())
    )
    return again, history, {"same_as_uninterrupted": same}


def divergence(out):
    """A rank that changes its own weights is caught at the epoch's end."""

    class Nudge(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if gpunn.distributed.rank() == 1:
                self.model.arena.params[0] += 1e-9

    X, y = data()
    model = mlp()
    try:
        model.fit(X, y, epochs=1, batch_size=8, callbacks=[Nudge()], verbose=0)
    except gpunn.distributed.DistributedError as exc:
        return model, None, {"error": str(exc)}
    return model, None, {"error": None}


def extreme_row_on_one_rank(out):
    """A finite but extreme row in rank 0's shard of batch 2 overflows its BatchNorm
    variance only (the loss stays finite there): every rank refuses that step
    together, none waits for the others in the next all-reduce."""
    from gpunn.layers import Activation

    X, y = data(n=40)
    X[12] = 1e200  # float64: its square overflows
    layers = [Dense(16), BatchNorm(), Activation("tanh"), Dense(3)]
    model = gpunn.Sequential(layers, 5, "float64", "cpu", seed=1)
    model.compile("softmax_cross_entropy", optim.Adam(lr=0.01))
    try:
        with np.errstate(all="ignore"):
            model.fit(X, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    except gpunn.NonFiniteError as exc:
        state = model.get_state()["batchnorm_1.running_var"]
        extra = {"error": str(exc), "steps": model.optimizer.steps}
        return model, None, {**extra, "finite": bool(np.isfinite(state).all())}
    return model, None, {"error": None}


SCENARIOS = {
    f.__name__: f
    for f in (
        parity,
        accumulate,
        tiny_batches,
        noise_and_batch_norm,
        resume,
        divergence,
        extreme_row_on_one_rank,
    )
}


def main(out, names):
    rank = gpunn.distributed.rank()
    for name in names:
        model, history, extra = SCENARIOS[name](out)
        arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        arrays["history"] = np.frombuffer(
            json.dumps(None if history is None else history.history).encode(), np.uint8
        )
        arrays["extra"] = np.frombuffer(
            json.dumps(extra, default=float).encode(), np.uint8
        )
        arrays["world"] = np.array([gpunn.distributed.size()])
        np.savez(os.path.join(out, f"{name}.rank{rank}.npz"), **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or list(SCENARIOS))
