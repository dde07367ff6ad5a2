"""ModelCheckpoint (file names, save_best_only, keep_last, ordering), the checkpoint's
documented contents, callbacks' state, and checkpoints that do not fit the model
(the README's "What is guaranteed": CheckpointError listing the entries, model untouched)."""

import json

import numpy as np
import pytest
from test_resume import BATCH, build, data, fingerprint

import gpunn
import gpunn.persistence.safetensors as file_layer
from gpunn import optim, schedules
from gpunn.callbacks import (
    CSVLogger,
    EarlyStopping,
    JSONLinesLogger,
    ReduceLROnPlateau,
)
from gpunn.checkpointing import FitLoop, ModelCheckpoint
from gpunn.errors import CheckpointError
from gpunn.layers import BatchNorm, Dense, Dropout
from gpunn.persistence import training_state


def fit(model, epochs=2, callbacks=(), **kwargs):
    X, y = data(40)
    return model.fit(
        X,
        y,
        epochs=epochs,
        batch_size=BATCH,
        verbose=0,
        callbacks=list(callbacks),
        **kwargs,
    )


def saved_state(path) -> dict:
    return training_state.read(path)[1]


# ------------------------------------------------------------------ contents
def test_checkpoint_holds_documented_tensors(tmp_path):
    model = build()
    fit(model, callbacks=[ModelCheckpoint(tmp_path / "c.safetensors")])
    tensors, state = training_state.read(tmp_path / "c.safetensors")
    assert tensors["dense_0.kernel"].shape == (6, 16)
    np.testing.assert_array_equal(tensors["dense_0.kernel"], model.get_weights()[0])
    np.testing.assert_array_equal(
        tensors["batchnorm_1.running_var"], model.get_state()["batchnorm_1.running_var"]
    )
    np.testing.assert_array_equal(
        tensors["optimizer.exp_avg_sq"], model.optimizer.state["exp_avg_sq"]
    )
    assert state["optimizer"]["class"] == "Adam"
    assert state["optimizer"]["hyperparameters"]["lr"]["name"] == "cosine"
    assert state["optimizer"]["host"]["steps"] == model.optimizer.steps == 10
    assert state["rng"]["model"] == model.rng.bit_generator.state
    assert state["loop"]["epoch"] == 2 and state["loop"]["batch"] == 0


def test_path_fields_and_epoch_logs(tmp_path):
    pattern = "m-{epoch:02d}-{step}-{loss:.3f}.safetensors"
    history = fit(build(), callbacks=[ModelCheckpoint(tmp_path / pattern)])
    names = sorted(p.name for p in tmp_path.iterdir())
    loss = history.history["loss"]
    assert names == [
        f"m-01-5-{loss[0]:.3f}.safetensors",
        f"m-02-10-{loss[1]:.3f}.safetensors",
    ]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"save_freq": 0}, "save_freq"),
        ({"save_freq": "batch"}, "save_freq"),
        ({"keep_last": 0}, "keep_last"),
        ({"save_best_only": True, "save_freq": 2}, "save_best_only"),
        ({"path": "c-{val_loss}.safetensors", "save_freq": 2}, "val_loss"),
        ({"path": "c-{epoch.safetensors"}, "format"),
        ({"mode": "best"}, "mode"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    kwargs = {"path": "c.safetensors", **kwargs}
    with pytest.raises(ValueError, match=match):
        ModelCheckpoint(**kwargs)


def test_checkpoint_runs_after_the_other_callbacks(tmp_path):
    """Listed first, it still saves ReduceLROnPlateau's cut of the same epoch."""
    model = build()
    reduce = ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=10)
    fit(model, callbacks=[ModelCheckpoint(tmp_path / "e{epoch}.safetensors"), reduce])
    assert model.optimizer.lr_scale == 0.5
    assert (
        saved_state(tmp_path / "e2.safetensors")["optimizer"]["host"]["lr_scale"] == 0.5
    )


# ------------------------------------------------------------------ save_best_only
@pytest.mark.parametrize(
    ("monitor", "mode", "values", "kept"),
    [
        ("val_loss", "auto", [3.0, 2.0, 2.5, 1.0], [1, 2, 4]),
        ("val_accuracy", "auto", [0.5, 0.4, 0.6, 0.6], [1, 3]),
        ("val_loss", "max", [3.0, 2.0, 4.0, 1.0], [1, 3]),
    ],
)
def test_save_best_only_saves_improvements(tmp_path, monitor, mode, values, kept):
    model = build()
    X, _ = data(40)
    model.predict(X)  # built
    save = ModelCheckpoint(
        tmp_path / "b{epoch}.safetensors", monitor, save_best_only=True, mode=mode
    )
    loop = FitLoop(model, [save], 40, BATCH, True, 1)
    save.set_model(model)
    model.stop_training = False
    save.on_train_begin({"log_names": ["loss", monitor]})
    for epoch, value in enumerate(values):
        loop.end_epoch(epoch)
        save.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"b{e}.safetensors" for e in kept
    ]


def test_save_best_only_needs_the_monitor(tmp_path):
    save = ModelCheckpoint(tmp_path / "c.safetensors", save_best_only=True)
    with pytest.raises(ValueError, match="val_loss"):
        fit(build(), callbacks=[save])


# ------------------------------------------------------------------ keep_last
def test_keep_last_keeps_the_newest_files(tmp_path):
    save = ModelCheckpoint(tmp_path / "s{step}.safetensors", save_freq=1, keep_last=2)
    fit(build(), epochs=2, callbacks=[save])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "s10.safetensors",
        "s9.safetensors",
    ]
    assert save.saved == [
        str(tmp_path / "s9.safetensors"),
        str(tmp_path / "s10.safetensors"),
    ]


def test_keep_last_deletes_only_after_the_new_file_is_committed(tmp_path, monkeypatch):
    real, calls = file_layer.write_file, []

    def write_file(path, tensors, metadata):
        calls.append(sorted(p.name for p in tmp_path.iterdir()))
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        real(path, tensors, metadata)

    monkeypatch.setattr(file_layer, "write_file", write_file)
    save = ModelCheckpoint(tmp_path / "s{step}.safetensors", save_freq=1, keep_last=2)
    with pytest.raises(OSError, match="No space"):
        fit(build(), callbacks=[save])
    assert calls[2] == ["s1.safetensors", "s2.safetensors"]  # both kept while writing
    assert calls[3] == ["s2.safetensors", "s3.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == calls[3]  # the failed save
    assert [p.rsplit("/", 1)[1] for p in save.saved] == calls[3]  # changed nothing
    saved_state(tmp_path / "s3.safetensors")  # still readable


# ------------------------------------------------------------------ callbacks' state
@pytest.mark.parametrize("logger", [CSVLogger, JSONLinesLogger])
def test_loggers_drop_rows_after_the_checkpoint_and_append(tmp_path, logger):
    log = tmp_path / "a.log"
    fit(
        build(),
        epochs=3,
        callbacks=[logger(log), ModelCheckpoint(tmp_path / "e{epoch}.safetensors")],
    )
    complete = log.read_text()  # a crashed run had written rows after epoch 1 too
    fit(
        build(seed=4),
        epochs=3,
        callbacks=[logger(log)],
        resume_from=tmp_path / "e1.safetensors",
    )
    assert log.read_text() == complete
    assert len(complete.splitlines()) == 3 + (logger is CSVLogger)


def test_callback_state_survives_json_and_one_on_train_begin():
    stopping = EarlyStopping("loss", patience=3)
    stopping.on_train_begin({})
    stopping.wait, stopping.best_epoch = 2, 4
    stopping._monitor.best = 0.25
    state = json.loads(json.dumps(stopping.get_state()))
    fresh = EarlyStopping("loss", patience=3)
    fresh.set_state(state)
    fresh.on_train_begin({})
    assert (fresh.wait, fresh.best_epoch, fresh.best) == (2, 4, 0.25)
    fresh.on_train_begin({})  # a later fit starts afresh
    assert (fresh.wait, fresh.best) == (0, float("inf"))


@pytest.mark.parametrize(
    ("callback", "state", "match"),
    [
        (ReduceLROnPlateau("loss"), {"wait": 1}, "entries"),
        (
            ReduceLROnPlateau("loss"),
            {
                "wait": 0,
                "cooldown_counter": 0,
                "monitor": "val_loss",
                "mode": "min",
                "best": 1.0,
            },
            "monitor",
        ),
        (CSVLogger("x.csv"), {"size": -1, "keys": None}, "size"),
        (CSVLogger("x.csv"), {"size": 0, "keys": "loss"}, "keys"),
    ],
)
def test_bad_callback_state_is_refused(callback, state, match):
    before = callback.get_state()
    with pytest.raises(ValueError, match=match):
        callback.set_state(state)
    assert callback.get_state() == before and not callback._restored


# ------------------------------------------------------------------ mismatches
@pytest.fixture
def saved(tmp_path):
    """A mid-epoch checkpoint of ``build()`` (2 batches into epoch 2)."""
    save = ModelCheckpoint(tmp_path / "ckpt.safetensors", save_freq=7)
    fit(build(), callbacks=[save])
    return tmp_path / "ckpt.safetensors"


def snapshot(model) -> dict:
    """What a refused resume must leave as it was."""
    found = fingerprint(model, gpunn.History())
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
    found["dropout_rng"] = [d.generator.get_state() for d in dropouts]
    found["lr"] = model.optimizer.hyperparameters()["lr"]
    return found


def _built(layers, dtype="float32", optimizer=None):
    model = gpunn.Sequential(layers, input_dim=6, dtype=dtype, seed=0)
    lr = schedules.get("cosine", lr=0.05, total_steps=40)
    model.compile("softmax_cross_entropy", optimizer or optim.Adam(lr, clip_norm=1.0))
    return model


@pytest.mark.parametrize(
    ("make", "entries"),
    [
        (
            lambda: _built(
                [Dense(17, activation="relu"), BatchNorm(), Dropout(0.3), Dense(3)]
            ),
            ["mismatched", "dense_0.kernel", "layers[0]"],
        ),
        (
            lambda: _built([Dense(16, activation="relu"), BatchNorm(), Dense(3)]),
            ["missing", "dense_2.kernel", "unexpected", "dense_3.kernel"],
        ),
        (
            lambda: _built(
                [Dense(16, activation="relu"), BatchNorm(), Dropout(0.3), Dense(3)],
                optimizer=optim.SGD(0.1, momentum=0.9),
            ),
            ["optimizer.class", "optimizer.momentum_buffer", "optimizer.exp_avg"],
        ),
        (
            lambda: _built(
                [Dense(16, activation="relu"), BatchNorm(), Dropout(0.3), Dense(3)],
                optimizer=optim.Adam(0.1, betas=(0.8, 0.999), clip_norm=1.0),
            ),
            ["optimizer.hyperparameters"],
        ),
        (
            lambda: _built(
                [Dense(16, activation="relu"), BatchNorm(), Dropout(0.3), Dense(3)],
                dtype="float64",
            ),
            ["dtype: checkpoint float32, model float64", "dense_0.kernel"],
        ),
    ],
    ids=["width", "layers", "optimizer", "hyperparameters", "dtype"],
)
def test_mismatched_checkpoint_is_refused_and_the_model_untouched(saved, make, entries):
    model = make()
    before = snapshot(model)
    with pytest.raises(CheckpointError) as info:
        fit(model, resume_from=saved)
    for entry in entries:
        assert entry in str(info.value)
    assert str(saved) in str(info.value)
    _assert_untouched(model, before)


def _assert_untouched(model, before):
    after = snapshot(model)
    for x, y in zip(before["weights"], after["weights"]):
        np.testing.assert_array_equal(x, y)
    for part in ("state", "optimizer"):
        for key in before[part]:
            np.testing.assert_array_equal(before[part][key], after[part][key])
    for key in ("host", "rng", "dropout_rng", "lr"):
        assert before[key] == after[key], key


def test_mid_epoch_checkpoint_needs_the_same_batches(saved):
    model = build()
    before = snapshot(model)
    with pytest.raises(
        CheckpointError, match="loop.batch_size: checkpoint 8, this fit 4"
    ):
        X, y = data(40)
        model.fit(X, y, epochs=2, batch_size=4, verbose=0, resume_from=saved)
    _assert_untouched(model, before)


def negative_var(tensors, state):
    tensors["batchnorm_1.running_var"] = -np.ones(16, np.float32)


def negative_steps(tensors, state):  # refused after the parameters were written
    state["optimizer"]["host"]["steps"] = -1


def zero_lr_scale(tensors, state):
    state["optimizer"]["host"]["lr_scale"] = 0.0


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (negative_var, "running_var"),
        (negative_steps, "steps"),
        (zero_lr_scale, "lr_scale"),
    ],
)
def test_refused_values_roll_everything_back(saved, tmp_path, edit, match):
    tensors, state = training_state.read(saved)
    edit(tensors, state)
    bad = tmp_path / "bad.safetensors"
    metadata = {training_state.STATE_KEY: json.dumps(state)}
    file_layer.write_file(bad, tensors, metadata)
    model = build()
    before = snapshot(model)
    with pytest.raises(CheckpointError, match=match):
        fit(model, resume_from=bad)
    _assert_untouched(model, before)


def test_refused_callback_state_leaves_the_model_untouched(tmp_path):
    save = ModelCheckpoint(tmp_path / "c.safetensors")
    fit(build(), callbacks=[save, EarlyStopping("loss")])
    model = build()
    before = snapshot(model)
    with pytest.raises(CheckpointError, match="EarlyStopping"):
        fit(
            model,
            epochs=3,
            callbacks=[EarlyStopping("loss", mode="max")],
            resume_from=tmp_path / "c.safetensors",
        )
    _assert_untouched(model, before)


def test_a_file_without_training_state_is_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    file_layer.write_file(path, {"dense_0.kernel": np.zeros((6, 16), np.float32)}, {})
    with pytest.raises(CheckpointError, match="is not a training checkpoint"):
        fit(build(), resume_from=path)


def test_mid_epoch_checkpoint_needs_the_same_metrics(saved):
    model = build()
    model.compile("softmax_cross_entropy", model.optimizer, metrics=["accuracy", "f1"])
    before = snapshot(model)
    with pytest.raises(CheckpointError, match=r"loop.stats.1: checkpoint missing"):
        fit(model, resume_from=saved)
    _assert_untouched(model, before)


def test_model_checkpoint_is_a_callback_of_gpunn_callbacks():
    assert gpunn.callbacks.ModelCheckpoint is ModelCheckpoint


def test_gpunn_load_reads_a_checkpoint_as_a_model(tmp_path):
    model = build()
    fit(model, callbacks=[ModelCheckpoint(tmp_path / "c.safetensors")])
    loaded = gpunn.load(tmp_path / "c.safetensors")
    X, _ = data(40)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.get_state().keys() == model.get_state().keys()
    assert type(loaded.optimizer) is type(model.optimizer)
    assert (
        loaded.optimizer.steps == 0
    )  # load gives a fresh optimizer; resume_from does not


def test_a_checkpoint_load_cannot_rebuild_is_still_resumable(tmp_path):
    model = build()
    model.compile("softmax_cross_entropy", optim.SGD(lr=lambda step: 0.1))
    fit(model, epochs=1, callbacks=[ModelCheckpoint(tmp_path / "c.safetensors")])
    with pytest.raises(
        CheckpointError, match=r"resume it with fit\(\.\.\., resume_from"
    ):
        gpunn.load(tmp_path / "c.safetensors")
    again = build()
    again.compile("softmax_cross_entropy", optim.SGD(lr=lambda step: 0.1))
    fit(again, epochs=2, resume_from=tmp_path / "c.safetensors")
    assert again.optimizer.steps == 2 * model.optimizer.steps
