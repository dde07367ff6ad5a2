"""Keras' fit arguments class_weight and initial_epoch, model(x), repr(model) and the
progress bar's ETA."""

import io

import numpy as np
import pytest

import gpunn
from gpunn import optim, progress
from gpunn.callbacks import Callback
from gpunn.checkpointing import ModelCheckpoint
from gpunn.errors import ArgumentError, ArgumentTypeError, InvalidInputError
from gpunn.layers import Dense

WEIGHTS = {0: 2.0, 2: 0.25}  # class 1 is missing: it weighs 1, as in Keras


def data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)).astype(np.float32), y


def make(layers=None, loss="softmax_cross_entropy", seed=0, lr=0.1, dtype="float32"):
    layers = layers or [Dense(8, activation="relu"), Dense(3)]
    model = gpunn.Sequential(layers, seed=seed, backend="cpu", dtype=dtype)
    model.compile(loss, optim.SGD(lr))
    return model


def same_weights(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


# ------------------------------------------------------------------ class_weight
def test_class_weight_equals_the_sample_weight_of_each_class():
    X, y = data()
    per_class = np.array([2.0, 1.0, 0.25], np.float32)
    a, b = make(), make()
    a.fit(X, y, epochs=2, batch_size=8, verbose=0, class_weight=WEIGHTS)
    b.fit(X, y, epochs=2, batch_size=8, verbose=0, sample_weight=per_class[y])
    assert same_weights(a, b)
    w = np.random.default_rng(1).uniform(0, 2, len(y)).astype(np.float32)
    c, d = make(), make()  # with sample weights: their product, as Keras
    c.fit(
        X, y, epochs=2, batch_size=8, verbose=0, class_weight=WEIGHTS, sample_weight=w
    )
    d.fit(X, y, epochs=2, batch_size=8, verbose=0, sample_weight=w * per_class[y])
    assert same_weights(c, d)
    e, f = make(), make()  # one-hot targets: the class is the row's argmax
    e.fit(X, np.eye(3)[y], epochs=2, batch_size=8, verbose=0, class_weight=WEIGHTS)
    f.fit(X, y, epochs=2, batch_size=8, verbose=0, class_weight=WEIGHTS)
    assert same_weights(e, f)


def test_class_weight_against_a_float64_gradient():
    """One SGD step on the whole batch of a linear softmax model: W moves by
    ``-lr X^T (softmax(XW + b) - onehot) c[y] / batch``."""
    X, y = data()
    model = make([Dense(3)], lr=0.5, dtype="float64")
    model.build(4)
    W, b = (w.copy() for w in model.get_weights())
    model.fit(X, y, epochs=1, batch_size=len(X), verbose=0, class_weight=WEIGHTS)
    z = X.astype(np.float64) @ W + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    c = np.array([2.0, 1.0, 0.25])[y][:, None]
    dz = (p - np.eye(3)[y]) * c / len(X)
    np.testing.assert_allclose(model.get_weights()[0], W - 0.5 * X.T @ dz, rtol=1e-12)
    np.testing.assert_allclose(
        model.get_weights()[1], b - 0.5 * dz.sum(axis=0), rtol=1e-12, atol=1e-15
    )


def test_binary_class_weight_uses_the_0_1_target():
    X, y = data()
    y = (y > 0).astype(np.float32)

    def layers():
        return [Dense(4, activation="relu"), Dense(1)]

    a = make(layers(), "binary_crossentropy")
    b = make(layers(), "binary_crossentropy")
    a.fit(X, y, epochs=2, batch_size=8, verbose=0, class_weight={1: 3.0})
    b.fit(
        X,
        y,
        epochs=2,
        batch_size=8,
        verbose=0,
        sample_weight=np.where(y == 1, 3.0, 1.0),
    )
    assert same_weights(a, b)


def test_class_weight_leaves_validation_unweighted():
    X, y = data(40)
    model = make()
    history = model.fit(
        X,
        y,
        epochs=1,
        batch_size=8,
        verbose=0,
        validation_split=0.25,
        class_weight=WEIGHTS,
    )
    expected = model.evaluate(X[30:], y[30:])
    assert history.history["val_loss"] == [pytest.approx(expected["loss"], rel=1e-6)]


@pytest.mark.parametrize(
    ("class_weight", "error", "match"),
    [
        ("balanced", ArgumentTypeError, "must be a dict"),
        ({"a": 1.0}, ArgumentTypeError, "keys must be int class labels"),
        ({3: 1.0}, ArgumentError, r"key 3 is not a class label in \[0, 3\)"),
        ({0: -1.0}, ArgumentError, r"class_weight\[0\] must be finite and >= 0"),
        ({0: float("nan")}, ArgumentError, "must be finite"),
        ({1: "2"}, ArgumentTypeError, "must be a number"),
        ({1: 1e39}, InvalidInputError, "too large for the model's dtype float32"),
    ],
)
def test_bad_class_weight_changes_nothing(class_weight, error, match):
    X, y = data()
    model = make()
    with pytest.raises(error, match=match):
        model.fit(X, y, verbose=0, class_weight=class_weight)
    assert not model.built


def test_class_weight_needs_classes():
    X, y = data()
    model = make([Dense(1)], "mse")
    with pytest.raises(ArgumentError, match="for classification losses"):
        model.fit(X, y.astype(np.float32), verbose=0, class_weight={0: 1.0})


# ------------------------------------------------------------------ initial_epoch
class Epochs(Callback):
    def __init__(self):
        self.begun, self.ended = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.ended.append(epoch)


def test_initial_epoch_numbers_history_callbacks_and_progress(capsys):
    X, y = data()
    seen = Epochs()
    history = make().fit(X, y, epochs=5, initial_epoch=2, verbose=2, callbacks=[seen])
    assert history.epoch == [2, 3, 4]
    assert seen.begun == seen.ended == [2, 3, 4]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == [
        "Epoch 3/5",
        "Epoch 4/5",
        "Epoch 5/5",
    ]


def test_two_calls_with_initial_epoch_equal_one_call():
    X, y = data()
    whole, parts = make(), make()
    whole.fit(X, y, epochs=4, batch_size=8, verbose=0)
    parts.fit(X, y, epochs=2, batch_size=8, verbose=0)
    history = parts.fit(X, y, epochs=4, initial_epoch=2, batch_size=8, verbose=0)
    assert history.epoch == [2, 3]
    assert same_weights(whole, parts)


def test_initial_epoch_must_leave_epochs_to_train():
    X, y = data()
    with pytest.raises(ArgumentError, match="initial_epoch=3 with epochs=3 trains"):
        make().fit(X, y, epochs=3, initial_epoch=3, verbose=0)
    with pytest.raises(ArgumentError, match="initial_epoch must be an int >= 0"):
        make().fit(X, y, epochs=3, initial_epoch=-1, verbose=0)


def test_initial_epoch_with_resume_from(tmp_path):
    X, y = data()
    path = tmp_path / "ck-{epoch}.safetensors"
    make().fit(
        X, y, epochs=2, batch_size=8, verbose=0, callbacks=[ModelCheckpoint(str(path))]
    )
    saved = tmp_path / "ck-2.safetensors"
    whole = make()
    whole.fit(X, y, epochs=4, batch_size=8, verbose=0)
    for initial in (0, 2):  # 0: the checkpoint decides; or its own epoch
        resumed = make()
        history = resumed.fit(
            X,
            y,
            epochs=4,
            batch_size=8,
            verbose=0,
            resume_from=saved,
            initial_epoch=initial,
        )
        assert history.epoch[-2:] == [2, 3]
        assert same_weights(whole, resumed)
    refused = make()
    refused.build(4)
    before = refused.get_weights()
    with pytest.raises(ArgumentError, match="initial_epoch=1 but the checkpoint"):
        refused.fit(
            X, y, epochs=4, batch_size=8, verbose=0, resume_from=saved, initial_epoch=1
        )
    assert all(np.array_equal(u, v) for u, v in zip(before, refused.get_weights()))


# ------------------------------------------------------------------ model(x), repr
def test_calling_the_model_predicts_one_batch():
    X, _ = data()
    model = make()
    out = model(X)  # builds it, as predict does
    np.testing.assert_array_equal(out, model.predict(X))
    assert isinstance(out, np.ndarray) and out.shape == (30, 3)
    np.testing.assert_array_equal(model(X[:1]), model.predict(X[:1]))
    with pytest.raises(ArgumentTypeError, match=r"use model.predict\(x\)"):
        model(iter([X]))


def test_repr_describes_the_model():
    model = gpunn.Sequential(
        [Dense(8, activation="relu"), Dense(3)],
        backend="cpu",
        seed=7,
        precision="mixed_bfloat16",
    )
    text = repr(model)
    assert "(0): Dense(units=8, activation='relu')" in text
    assert "not built" in text and "not compiled" in text
    assert "dtype=float32, precision=mixed_bfloat16, backend=cpu, seed=7" in text
    model.compile("softmax_cross_entropy", optim.Adam(0.01))
    model.build(4)
    text = repr(model)
    assert (
        "(dense_0): Dense(units=8, activation='relu') -> (batch, 8), 40 params" in text
    )
    assert "input_dim=4, params=67 (built)" in text
    assert "optimizer=Adam(lr=0.01" in text and "loss=SoftmaxCrossEntropy(" in text
    assert "metrics=['accuracy']" in text


# ------------------------------------------------------------------ progress ETA
class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_shows_an_eta(monkeypatch):
    clock = iter([0.0, 2.0, 4.0, 20.0])  # start, after batch 1, 2, 10
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    stream = Terminal()
    bar = progress.Progress(1, epochs=3, steps=10, stream=stream)
    bar.start_epoch(1)
    bar.batch(1, lambda: {"loss": 1.0})
    assert stream.getvalue().endswith("1/10 - ETA: 18s - loss: 1.0000")
    bar.batch(2, lambda: {"loss": 1.0})
    assert "2/10 - ETA: 16s" in stream.getvalue()
    bar.batch(10, lambda: {"loss": 0.5})
    assert stream.getvalue().endswith("10/10 - 20.0s - loss: 0.5000")


def test_progress_without_a_known_length(monkeypatch):
    monkeypatch.setattr(progress.time, "perf_counter", lambda: 1.0)
    stream = Terminal()
    bar = progress.Progress(1, epochs=1, steps=None, stream=stream)
    bar.start_epoch(1)
    bar.batch(3, dict)
    assert "Epoch 1/1 3/Unknown - 0.0s" in stream.getvalue()
    bar.start_epoch(2, steps=7)  # learned after the first pass
    assert bar.steps == 7


def test_eta_format():
    assert progress.format_eta(42.4) == "42s"
    assert progress.format_eta(187) == "3:07"
    assert progress.format_eta(3725) == "1:02:05"
