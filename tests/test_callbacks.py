"""Callbacks: Keras' stopping and plateau rules replayed on scripted monitor values,
then end to end inside fit (restore_best_weights, stop mid-epoch, loggers)."""

import csv
import json
import math

import numpy as np
import pytest
from test_model import blobs, make

import gpunn
from gpunn import callbacks, schedules
from gpunn.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    JSONLinesLogger,
    LearningRateScheduler,
    ReduceLROnPlateau,
    TerminateOnNaN,
)


class Script(Callback):
    """Writes ``values[epoch]`` into the epoch logs as ``score`` (runs before the
    callbacks after it), and records the weights and the lr each epoch starts with."""

    def __init__(self, values):
        self.values, self.weights, self.lrs = values, [], []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:  # after every on_epoch_begin
            self.lrs.append(self.model.optimizer.lr)

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.values[epoch]
        self.weights.append(self.model.get_weights())


def fit_with(values, *extra, epochs=None, model=None):
    X, y = blobs(24)
    model = model or make(seed=3)
    script = Script(values)
    history = model.fit(
        X,
        y,
        epochs=epochs or len(values),
        batch_size=8,
        verbose=0,
        callbacks=[script, *extra],
    )
    return model, script, history


@pytest.mark.parametrize(
    "values, patience, min_delta, mode, stopped",
    [
        ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], 2, 0.0, "min", 3),
        ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], 0, 0.0, "min", 2),
        ([1.0, 0.99, 0.98, 0.97, 0.96], 1, 0.05, "min", 1),
        ([0.1, 0.2, 0.3, 0.3, 0.3], 1, 0.0, "max", 3),
        ([0.1, 0.2, 0.3, 0.4, 0.5], 1, 0.0, "auto", 1),  # "score": minimized
    ],
)
def test_early_stopping_follows_keras_rules(values, patience, min_delta, mode, stopped):
    stop = EarlyStopping("score", min_delta, patience, mode)
    _, _, history = fit_with(values, stop)
    assert stop.stopped_epoch == stopped
    assert len(history.epoch) == (stopped + 1 if stopped else len(values))


def test_early_stopping_baseline_and_warmup():
    stop = EarlyStopping("score", patience=1, baseline=0.5)
    fit_with([0.9, 0.8, 0.7, 0.6], stop)
    assert stop.stopped_epoch == 1  # never beat the baseline
    late = EarlyStopping("score", patience=0, start_from_epoch=2)
    _, _, history = fit_with([1.0, 2.0, 3.0, 2.5, 4.0], late)
    assert late.stopped_epoch == 4 and len(history.epoch) == 5


def test_restore_best_weights_puts_back_the_best_epoch():
    stop = EarlyStopping("score", patience=2, restore_best_weights=True)
    model, script, _ = fit_with([1.0, 0.4, 0.8, 0.9, 0.7, 0.1], stop)
    assert stop.stopped_epoch == 3 and stop.best_epoch == 1
    for got, want in zip(model.get_weights(), script.weights[1]):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(script.weights[1][0], script.weights[3][0])


def test_reduce_lr_on_plateau_scales_and_respects_min_lr():
    plateau = ReduceLROnPlateau("score", factor=0.5, patience=1, min_lr=2e-3)
    model, script, _ = fit_with([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], plateau)
    # Adam(1e-2): halved after epochs 1, 2 (cooldown 0, patience 1), then the floor
    np.testing.assert_allclose(script.lrs, [1e-2, 1e-2, 5e-3, 2.5e-3, 2e-3, 2e-3])
    assert model.optimizer.lr == pytest.approx(2e-3)


def test_reduce_lr_on_plateau_composes_with_a_schedule():
    X, y = blobs(24)
    model = make(seed=3)
    schedule = schedules.ExponentialDecay(1e-2, decay=0.1)
    model.optimizer.lr = schedule
    plateau = ReduceLROnPlateau("score", factor=0.5, patience=1, cooldown=2)
    script = Script([1.0, 1.0, 1.0, 1.0, 1.0])
    model.fit(X, y, epochs=5, batch_size=8, verbose=0, callbacks=[script, plateau])
    # 3 updates per epoch; reductions after epochs 1 and 3: as in Keras, the cooldown
    # counter is decremented before the epoch is judged, so 2 skips one epoch
    scale = [1, 1, 0.5, 0.5, 0.25]
    expected = [schedule(3 * e) * s for e, s in zip(range(5), scale)]
    np.testing.assert_allclose(script.lrs, expected, rtol=1e-12)


def test_learning_rate_scheduler_sets_the_lr_each_epoch():
    halve = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)
    _, script, _ = fit_with([0, 0, 0], halve)
    np.testing.assert_allclose(script.lrs, [1e-2, 5e-3, 2.5e-3])
    by_epoch = LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    _, script, _ = fit_with([0, 0, 0], by_epoch)
    np.testing.assert_allclose(script.lrs, [0.1, 0.05, 0.1 / 3])
    with pytest.raises(ValueError, match="schedule"):
        fit_with([0], LearningRateScheduler(lambda epoch: -1.0))


def test_terminate_on_nan_stops_after_the_bad_batch():
    class Poison(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.optimizer.steps == 4:
                logs["loss"] = np.float32("nan")

    model = make(seed=0)
    X, y = blobs(24)
    history = model.fit(
        X, y, epochs=5, batch_size=8, verbose=0, callbacks=[Poison(), TerminateOnNaN()]
    )
    assert model.optimizer.steps == 4  # the first batch of epoch 2 was the last
    assert len(history.epoch) == 2


def test_stop_training_from_a_batch_hook_ends_fit_at_once():
    class StopAt(Callback):
        def on_train_batch_end(self, batch, logs=None):
            assert logs["size"] == 8 and np.shape(logs["loss"]) == ()
            if batch == 1:
                self.model.stop_training = True

    model = make(seed=0)
    X, y = blobs(40)
    history = model.fit(X, y, epochs=3, batch_size=8, verbose=0, callbacks=[StopAt()])
    assert model.optimizer.steps == 2 and len(history.epoch) == 1


def test_csv_and_json_lines_loggers_write_every_epoch(tmp_path):
    X, y = blobs(24)
    model = make(seed=0)
    csv_path, json_path = tmp_path / "log.csv", tmp_path / "log.jsonl"
    history = model.fit(
        X,
        y,
        epochs=3,
        batch_size=8,
        verbose=0,
        validation_split=0.25,
        callbacks=[CSVLogger(csv_path), JSONLinesLogger(json_path)],
    )
    rows = list(csv.DictReader(csv_path.open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
    np.testing.assert_allclose(
        [float(r["val_loss"]) for r in rows], history.history["val_loss"], rtol=1e-12
    )
    records = [json.loads(line) for line in json_path.read_text().splitlines()]
    assert [r["loss"] for r in records] == history.history["loss"]
    model.fit(X, y, epochs=1, verbose=0, callbacks=[CSVLogger(csv_path, append=True)])
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("epoch")  # one header only


def test_missing_monitor_and_bad_arguments_are_named():
    model = make(seed=0)
    before = model.get_weights()
    with pytest.raises(ValueError, match="monitor='val_loss' needs validation data"):
        fit_with([0, 0], EarlyStopping(), model=model)
    assert model.optimizer.steps == 0  # refused before any update
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="monitor='val_lost' is not among"):
        X, y = blobs(24)
        model.fit(
            X,
            y,
            validation_split=0.25,
            verbose=0,
            callbacks=[ReduceLROnPlateau("val_lost")],
        )
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")
    with pytest.raises(TypeError, match="Callback"):
        fit_with([0], object())
    with pytest.raises(TypeError, match="callable"):
        LearningRateScheduler(3)


def test_monitor_mode_infers_direction():
    assert callbacks.monitor_mode("val_accuracy") == "max"
    assert callbacks.monitor_mode("top_k_accuracy") == "max"
    assert callbacks.monitor_mode("f1") == "max"
    assert callbacks.monitor_mode("val_binary_accuracy") == "max"
    assert callbacks.monitor_mode("val_loss") == "min"
    assert callbacks.monitor_mode("mae") == "min"
    assert callbacks.monitor_mode("val_loss", "max") == "max"
    assert not math.isnan(EarlyStopping().best)


# ------------------------------------------------ arguments checked at train begin
def _refused_before_any_step(model, callbacks_, error, match, **kwargs):
    """``fit`` raises ``error`` before the first step: weights, optimizer step and
    (with ``resume_from``) nothing restored."""
    before = model.get_weights()
    X, y = blobs(24)
    with pytest.raises(error, match=match) as info:
        model.fit(
            X, y, epochs=2, batch_size=8, verbose=0, callbacks=callbacks_, **kwargs
        )
    assert model.optimizer.steps == 0
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    return info.value


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("ckpt-{val_loss:.3f}.st", r"val_loss.*cannot be formatted"),  # no val data
        ("ckpt-{epoch:s}.st", r"epoch:s.*cannot be formatted"),  # an int field
        ("ckpt-{0}.st", r"\{0\}.*cannot be formatted"),  # positional
        ("ckpt-{epochs}.st", r"epochs.*cannot be formatted"),  # a typo
    ],
)
def test_model_checkpoint_path_is_checked_before_the_first_step(tmp_path, path, match):
    """Rule 12: a path whose fields cannot be formatted used to fail only at the
    first save, after an epoch of training (and after CSVLogger had emptied its
    file): now fit refuses it first, every callback untouched."""
    from gpunn.checkpointing import ModelCheckpoint

    log = tmp_path / "log.csv"
    log.write_text("an earlier run's rows\n")
    save = ModelCheckpoint(tmp_path / path)
    _refused_before_any_step(make(seed=0), [CSVLogger(log), save], ValueError, match)
    assert log.read_text() == "an earlier run's rows\n"
    assert list(tmp_path.iterdir()) == [log]


def test_model_checkpoint_directory_is_made_before_the_first_step(tmp_path):
    from gpunn.checkpointing import ModelCheckpoint

    (tmp_path / "taken").write_text("a file, not a directory")
    save = ModelCheckpoint(tmp_path / "taken" / "run" / "ckpt-{epoch}.st")
    error = _refused_before_any_step(make(seed=0), [save], OSError, "ModelCheckpoint")
    assert str(tmp_path / "taken") in str(error)


def test_a_resumed_fit_checks_callbacks_before_restoring(tmp_path):
    from gpunn.checkpointing import ModelCheckpoint

    X, y = blobs(24)
    make(seed=0).fit(
        X,
        y,
        epochs=1,
        batch_size=8,
        verbose=0,
        callbacks=[ModelCheckpoint(tmp_path / "c.st")],
    )
    bad = ModelCheckpoint(tmp_path / "{val_loss}.st")
    _refused_before_any_step(
        make(seed=1), [bad], ValueError, "val_loss", resume_from=tmp_path / "c.st"
    )


def test_a_val_monitor_that_fit_does_not_log_is_refused_before_the_first_step():
    _refused_before_any_step(
        make(seed=0),
        [ReduceLROnPlateau("val_lost")],
        ValueError,
        "monitor='val_lost' is not among",
        validation_split=0.25,
    )


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: gpunn.load(5), TypeError, "path must be a file path"),
        (lambda: gpunn.ModelCheckpoint(5), TypeError, "path must be a file path"),
        (lambda: gpunn.ModelCheckpoint("c.st", verbose=5), ValueError, "verbose"),
        (
            lambda: gpunn.ModelCheckpoint("c.st", save_best_only="no"),
            TypeError,
            "save_best_only",
        ),
        (
            lambda: gpunn.callbacks.CSVLogger(5),
            TypeError,
            "filename must be a file path",
        ),
        (lambda: gpunn.callbacks.CSVLogger("l.csv", append="x"), TypeError, "append"),
    ],
)
def test_file_arguments_are_gpunn_errors_naming_them(make, error, match):
    with pytest.raises(error, match=match) as info:
        make()
    assert isinstance(info.value, gpunn.errors.GpunnError)
