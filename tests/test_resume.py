"""fit(resume_from=...) continues bitwise where a checkpoint left off (the README's
"Checkpoints: resume"): at epoch boundaries and mid-epoch, with Adam + a schedule +
clipping + Dropout + BatchNorm + EarlyStopping/ReduceLROnPlateau state, in this
process and in a new one; negative controls show the test can fail."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn import optim, schedules
from gpunn.backends.philox import CounterRNG
from gpunn.callbacks import Callback, EarlyStopping, ReduceLROnPlateau
from gpunn.checkpointing import ModelCheckpoint
from gpunn.layers import BatchNorm, Dense, Dropout, Layer
from gpunn.persistence import training_state
from gpunn.persistence.safetensors import read_file, write_file

EPOCHS, BATCH = 5, 8  # 40 training samples: 5 batches per epoch


def data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.standard_normal((n, 6)) + 2.0 * np.eye(3, 6)[y]
    return X, y


def build(seed=0, dtype="float32", backend="cpu", extra=()):
    layers = [Dense(16, activation="relu"), BatchNorm(), Dropout(0.3), *extra, Dense(3)]
    model = gpunn.Sequential(
        layers, input_dim=6, dtype=dtype, backend=backend, seed=seed
    )
    lr = schedules.get("cosine", lr=0.05, total_steps=40)
    model.compile("softmax_cross_entropy", optim.Adam(lr, clip_norm=1.0))
    return model


def callbacks():
    """ReduceLROnPlateau cuts the lr every epoch (min_delta=10 is never met), so the
    saved ``lr_scale`` and counters matter; EarlyStopping keeps its best weights."""
    return [
        EarlyStopping("val_loss", patience=2, restore_best_weights=True),
        ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=10),
    ]


def train(model, resume_from=None, epochs=EPOCHS, extra_callbacks=(), **kwargs):
    X, y = data()
    return model.fit(
        X,
        y,
        epochs=epochs,
        batch_size=BATCH,
        validation_split=0.2,
        verbose=0,
        callbacks=[*callbacks(), *extra_callbacks],
        resume_from=resume_from,
        **kwargs,
    )


def fingerprint(model, history) -> dict:
    """Everything a trajectory leaves behind, as host values."""
    return {
        "weights": model.get_weights(),
        "state": model.get_state(),
        "optimizer": {
            k: model.backend.to_numpy(v) for k, v in model.optimizer.state.items()
        },
        "host": model.optimizer.host_state(),
        "rng": model.rng.bit_generator.state,
        "history": history.history,
    }


def digest(model, history) -> str:
    """SHA-256 of :func:`fingerprint`, to compare across processes."""
    found = fingerprint(model, history)
    h = hashlib.sha256()
    for arrays in (
        found["weights"],
        found["state"].values(),
        found["optimizer"].values(),
    ):
        for array in arrays:
            h.update(np.ascontiguousarray(array).tobytes())
    rest = {k: found[k] for k in ("host", "rng", "history")}
    h.update(json.dumps(rest, sort_keys=True).encode())
    return h.hexdigest()


def assert_same(a: dict, b: dict) -> None:
    assert len(a["weights"]) == len(b["weights"])
    for x, y in zip(a["weights"], b["weights"]):
        np.testing.assert_array_equal(x, y)
    for part in ("state", "optimizer"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            np.testing.assert_array_equal(a[part][key], b[part][key])
    assert a["host"] == b["host"]
    assert a["rng"] == b["rng"]
    assert a["history"] == b["history"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run that checkpoints every 3 batches and every epoch."""
    folder = tmp_path_factory.mktemp("ckpt")
    model = build()
    history = train(
        model,
        extra_callbacks=[
            ModelCheckpoint(folder / "batch-{epoch}-{batch}.safetensors", save_freq=3),
            ModelCheckpoint(folder / "epoch-{epoch}.safetensors"),
        ],
    )
    return folder, fingerprint(model, history), digest(model, history)


def checkpoint(folder, name):
    path = folder / name
    assert path.exists(), sorted(p.name for p in folder.iterdir())
    return path


@pytest.mark.parametrize(
    "name",
    [
        "epoch-1.safetensors",  # an epoch boundary
        "epoch-3.safetensors",  # after lr reductions and patience counting
        "batch-1-3.safetensors",  # mid-epoch
        "batch-2-4.safetensors",  # mid-epoch, one batch before the end
        "batch-3-2.safetensors",  # mid-epoch, after an lr reduction
        "batch-3-5.safetensors",  # after the last batch, before the epoch's end
    ],
)
def test_resume_is_bitwise_identical(reference, name):
    folder, expected, _ = reference
    model = build(seed=99)  # the checkpoint's generators replace the new seed's
    history = train(model, resume_from=checkpoint(folder, name))
    assert_same(fingerprint(model, history), expected)


def test_the_reference_run_exercises_the_saved_state(reference):
    """The resume tests above are only meaningful if the callbacks and the schedule
    have state to lose at the checkpoints."""
    folder, expected, _ = reference
    tensors, state = training_state.read(checkpoint(folder, "batch-3-2.safetensors"))
    assert state["optimizer"]["host"]["lr_scale"] < 1
    assert state["optimizer"]["host"]["steps"] == 2 * 5 + 2
    assert state["callbacks"]["EarlyStopping(val_loss)"]["best"] < float("inf")
    assert state["loop"]["batch"] == 2 and len(state["loop"]["sizes"]) == 2
    assert "loop.losses" in tensors and "optimizer.grad_norm" in tensors
    assert expected["host"]["steps"] > state["optimizer"]["host"]["steps"]


def test_resume_in_a_new_process(reference):
    folder, _, expected = reference
    tests = Path(__file__).parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tests.parent), str(tests), env.get("PYTHONPATH", "")]
    )
    script = (
        "import sys, test_resume as t\n"
        "model = t.build(seed=5)\n"
        "history = t.train(model, resume_from=sys.argv[1])\n"
        "print(t.digest(model, history))\n"
    )
    path = checkpoint(folder, "batch-3-2.safetensors")
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == expected


def rewrite(src, dst, edit) -> Path:
    """Copies checkpoint ``src`` to ``dst`` with ``edit(state)`` applied to its JSON."""
    tensors, metadata = read_file(src)
    state = json.loads(metadata[training_state.STATE_KEY])
    edit(state)
    metadata = {**metadata, training_state.STATE_KEY: json.dumps(state)}
    write_file(dst, tensors, metadata)
    return dst


def drop_steps(state):
    state["optimizer"]["host"]["steps"] = 0


def drop_rngs(state):
    fresh = np.random.default_rng(2024).bit_generator.state
    state["rng"]["model"] = state["loop"]["epoch_rng"] = fresh
    dropout = CounterRNG(2024).get_state()  # Dropout's generator is counter-based
    state["rng"]["layers"] = {name: dropout for name in state["rng"]["layers"]}


@pytest.mark.parametrize("edit", [drop_steps, drop_rngs], ids=["steps", "rng"])
def test_negative_control_losing_state_changes_the_trajectory(
    reference, tmp_path, edit
):
    """A checkpoint that lost its step counter (Adam's bias correction, the
    schedule) or its generator states (dropout masks, permutations) resumes onto
    another trajectory: the bitwise tests above would notice. (The final weights
    can still agree: EarlyStopping restores its best epoch, from before.)"""
    folder, expected, _ = reference
    src = checkpoint(folder, "batch-3-2.safetensors")
    control = build(seed=99)  # the rewrite alone changes nothing
    same = rewrite(src, tmp_path / "same.safetensors", lambda state: None)
    assert_same(fingerprint(control, train(control, resume_from=same)), expected)
    model = build(seed=99)
    history = train(
        model, resume_from=rewrite(src, tmp_path / "lost.safetensors", edit)
    )
    lost = fingerprint(model, history)  # the trajectory after the checkpoint differs
    assert lost["history"]["loss"][2:] != expected["history"]["loss"][2:]
    exp_avg = lost["optimizer"]["exp_avg"]
    assert not np.array_equal(exp_avg, expected["optimizer"]["exp_avg"])


class Recorder(Layer):
    """Records the rows it sees in training (identity otherwise)."""

    def __init__(self, seen: list, name=None):
        super().__init__(name)
        self.seen = seen

    def forward(self, x, training=False):
        if training:
            self.seen.append(np.array(x))
        return x

    def backward(self, dy):
        return dy


def test_mid_epoch_resume_sees_every_sample_once(tmp_path):
    X, y = data(40)
    rows, resumed_rows = [], []
    model = gpunn.Sequential([Recorder(rows), Dense(3)], 6, "float64", seed=0)
    model.compile("softmax_cross_entropy", "sgd")
    save = ModelCheckpoint(tmp_path / "ckpt.safetensors", save_freq=7)
    model.fit(X, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[save])
    other = gpunn.Sequential([Recorder(resumed_rows), Dense(3)], 6, "float64", seed=3)
    other.compile("softmax_cross_entropy", "sgd")
    # the last save was after 7 batches: epoch 2, batch 2 of 5
    other.fit(X, y, epochs=2, batch_size=BATCH, verbose=0, resume_from=save.saved[-1])
    assert len(resumed_rows) == 3
    for got, want in zip(resumed_rows, rows[7:]):
        np.testing.assert_array_equal(got, want)
    epoch = np.concatenate(rows[5:7] + resumed_rows)
    order = np.lexsort(epoch.T)
    np.testing.assert_array_equal(epoch[order], X[np.lexsort(X.T)])
    np.testing.assert_array_equal(other.get_weights()[0], model.get_weights()[0])


def test_resume_inside_an_accumulation_group(tmp_path):
    X, y = data(48)
    save = ModelCheckpoint(tmp_path / "s{step}.safetensors", save_freq=4)
    model = build()
    history = model.fit(
        X,
        y,
        epochs=2,
        batch_size=BATCH,
        verbose=0,
        accumulate_steps=4 - 1,
        callbacks=[save],
    )
    first = tmp_path / "s1.safetensors"  # 4 batches = one group of 3 and one of 1
    assert training_state.read(first)[1]["loop"]["accumulated"] == [
        1,
        8,
    ]
    other = build(seed=1)
    resumed = other.fit(
        X,
        y,
        epochs=2,
        batch_size=BATCH,
        verbose=0,
        accumulate_steps=3,
        resume_from=first,
    )
    assert_same(fingerprint(other, resumed), fingerprint(model, history))


def test_epochs_counts_the_checkpoints_epochs(reference):
    folder, _, _ = reference
    model = build(seed=1)
    X, y = data()
    history = model.fit(
        X,
        y,
        epochs=2,
        batch_size=BATCH,
        validation_split=0.2,
        verbose=0,
        resume_from=checkpoint(folder, "epoch-1.safetensors"),
    )
    assert history.epoch == [0, 1]  # the saved epoch and one more
    assert model.optimizer.steps == 2 * 5


@pytest.mark.parametrize(
    ("name", "epochs", "completed"),
    [
        ("epoch-3.safetensors", 3, 3),
        ("epoch-3.safetensors", 1, 3),
        ("batch-3-2.safetensors", 2, 2),  # epoch 3 in progress: epochs=2 ended before
    ],
)
def test_resuming_with_no_epochs_left_says_so(reference, name, epochs, completed):
    """Rule 9: ``epochs`` at or below the checkpoint's epoch would train nothing:
    a ValueError naming ``epochs``, before anything is restored."""
    folder, _, _ = reference
    model = build(seed=1)
    before = fingerprint(model, gpunn.History())
    X, y = data()
    with pytest.raises(ValueError, match=rf"epochs={epochs}.*completed {completed}"):
        model.fit(
            X,
            y,
            epochs=epochs,
            batch_size=BATCH,
            validation_split=0.2,
            verbose=0,
            resume_from=checkpoint(folder, name),
        )
    assert_same(fingerprint(model, gpunn.History()), before)


class OutOfTime(Callback):
    """Stops training after ``batches`` batches, as a job near its time limit."""

    def __init__(self, batches: int):
        self.left = batches

    def on_train_batch_end(self, batch, logs=None):
        self.left -= 1
        if self.left == 0:
            self.model.stop_training = True


@pytest.mark.parametrize(
    ("stop_after", "saver", "name"),
    [
        (2 * 5, {"path": "e{epoch}.st"}, "e2.st"),  # stopped at an epoch's end
        (7, {"path": "b{step}.st", "save_freq": 1}, "b7.st"),  # stopped mid-epoch
    ],
)
def test_a_run_stopped_by_a_callback_resumes_and_trains(
    reference, tmp_path, stop_after, saver, name
):
    """Rule 9: a checkpoint written after a callback set ``stop_training`` (out of
    time, resume in the next job) continues to the end, bitwise as if the run had
    never stopped."""
    _, expected, _ = reference
    saver = ModelCheckpoint(**{**saver, "path": tmp_path / saver["path"]})
    train(build(), extra_callbacks=[OutOfTime(stop_after), saver])
    model = build(seed=3)
    history = train(model, resume_from=tmp_path / name)
    assert_same(fingerprint(model, history), expected)


def test_resume_on_each_backend(backend, tmp_path):
    """A mid-epoch resume is bitwise on the same device too, Dropout included (its
    counter-based generator saves its state on every backend; GaussianNoise's cuRAND
    one on the GPU does not, so it stays out)."""
    X, y = data(40)

    def model(seed):
        layers = [Dense(16, activation="tanh"), BatchNorm(), Dropout(0.3), Dense(3)]
        found = gpunn.Sequential(layers, input_dim=6, backend=backend, seed=seed)
        found.compile("softmax_cross_entropy", optim.Adam(0.01))
        return found

    save = ModelCheckpoint(tmp_path / "c{step}.safetensors", save_freq=7)
    first = model(0)
    history = first.fit(X, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[save])
    second = model(1)
    resumed = second.fit(
        X,
        y,
        epochs=3,
        batch_size=BATCH,
        verbose=0,
        resume_from=tmp_path / "c7.safetensors",
    )
    assert_same(fingerprint(second, resumed), fingerprint(first, history))
