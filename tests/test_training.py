"""fit: batching, shuffling, validation, History, progress output, reproducibility and
an end-to-end convergence test on the bundled digits."""

import io

import numpy as np
import pytest
from test_model import blobs, make

import gpunn
from gpunn import datasets
from gpunn.layers import Dense
from gpunn.progress import Progress


def test_fit_is_the_documented_loop_of_train_steps(backend):
    """fit == one permutation per epoch from the model's generator, batches in that
    order, last partial batch used: replayed by hand with train_step, bitwise equal."""
    X, y = blobs(23)
    fitted = make(backend, "float64", seed=5)
    fitted.fit(X, y, epochs=2, batch_size=5, verbose=0)
    manual = make(backend, "float64", seed=5)
    for _ in range(2):
        order = manual.rng.permutation(len(X))
        for start in range(0, len(X), 5):
            manual.train_step(X[order[start : start + 5]], y[order[start : start + 5]])
    assert fitted.optimizer.steps == manual.optimizer.steps == 2 * 5
    for a, b in zip(fitted.get_weights(), manual.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_no_shuffle_takes_batches_in_order(backend):
    X, y = blobs(10)
    fitted = make(backend, seed=1)
    fitted.fit(X, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    manual = make(backend, seed=1)
    for start in (0, 4, 8):
        manual.train_step(X[start : start + 4], y[start : start + 4])
    for a, b in zip(fitted.get_weights(), manual.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_same_seed_is_bitwise_reproducible_and_seeds_differ(backend):
    X, y = blobs(50)

    def run(seed):
        model = make(backend, seed=seed)
        history = model.fit(X, y, epochs=3, batch_size=8, verbose=0)
        return model.get_weights(), history.history["loss"]

    (w1, l1), (w2, l2), (w3, l3) = run(7), run(7), run(8)
    assert l1 == l2 and l1 != l3
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(w1[0], w3[0])


def test_fit_never_touches_global_rngs():
    state = np.random.get_state()[1].copy()
    X, y = blobs()
    make().fit(X, y, epochs=2, verbose=0)
    gpunn.Sequential([Dense(3)], input_dim=2, backend="cpu")  # seed=None: OS entropy
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_history_and_validation_split_take_the_last_samples(backend):
    X, y = blobs(40)
    model = make(backend, seed=2)
    history = model.fit(X, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0)
    assert history.epoch == [0, 1, 2]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.history.values())
    assert model.optimizer.steps == 3 * 4  # 30 training samples / 8 -> 4 batches
    last = model.evaluate(X[30:], y[30:])
    assert history.history["val_loss"][-1] == pytest.approx(last["loss"], rel=1e-6)
    assert history.history["val_accuracy"][-1] == last["accuracy"]


def test_validation_data(backend):
    X, y = blobs(40)
    Xv, yv = blobs(12, seed=9)
    model = make(backend)
    history = model.fit(X, y, epochs=2, validation_data=(Xv, yv), verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(Xv, yv)["loss"], rel=1e-6
    )


def test_epoch_loss_is_the_sample_weighted_mean_of_batch_losses():
    X, y = blobs(10)
    model = make(optimizer=gpunn.optim.SGD(lr=1e-9))  # weights barely move
    history = model.fit(X, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    batches = [
        make(optimizer=gpunn.optim.SGD(lr=1e-9)).evaluate(X[s : s + 4], y[s : s + 4])
        for s in (0, 4, 8)
    ]
    expected = (
        4 * batches[0]["loss"] + 4 * batches[1]["loss"] + 2 * batches[2]["loss"]
    ) / 10
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an int >= 1, got 2.5"),
        ({"validation_split": 1.0}, r"validation_split must be in \[0, 1\), got 1.0"),
        ({"validation_split": 0.001}, "leaves no samples"),
        ({"validation_split": 0.2, "validation_data": ([[0] * 6], [0])}, "not both"),
        ({"validation_data": ([[0] * 6],)}, r"must be \(X_val, y_val\)"),
        (
            {"validation_data": (np.ones((2, 5)), [0, 1])},
            "validation_data\\[0\\] has 5 features",
        ),
        ({"verbose": 3}, "verbose must be 0, 1 or 2"),
    ],
)
def test_fit_argument_errors(kwargs, message):
    X, y = blobs()
    model = make()
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, **{"verbose": 0, **kwargs})
    assert model.optimizer.steps == 0


def test_verbose_output(capsys):
    X, y = blobs(20)
    make().fit(X, y, epochs=3, verbose=0)
    assert capsys.readouterr().out == ""
    make().fit(X, y, epochs=3, verbose=2, validation_split=0.25)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("Epoch 1/3 - ")
    assert "loss: " in lines[2] and "val_accuracy: " in lines[2]
    make().fit(X, y, epochs=2, verbose=1)  # not a terminal: one line per epoch
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_progress_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(1, epochs=2, steps=4, stream=stream)
    progress.start_epoch(1)
    for step in range(1, 5):
        progress.batch(step, lambda: {"loss": 1.5})
    progress.end_epoch({"loss": 1.25, "accuracy": 0.5})
    text = stream.getvalue()
    assert "\rEpoch 1/2 [" + "=" * 30 + "] 4/4" in text and "loss: 1.5000" in text
    assert text.endswith("loss: 1.2500 - accuracy: 0.5000\n")


def test_digits_converges(backend):
    """End to end: the bundled digits, standardized, reach >= 96% test accuracy."""
    X, y = datasets.load_digits()
    X_tr, X_te, y_tr, y_te = datasets.train_test_split(X, y, 0.2, seed=0, stratify=True)
    X_tr, X_te = datasets.standardize(X_tr, X_te)
    model = gpunn.Sequential(
        [Dense(128, activation="relu"), Dense(10)], backend=backend, seed=0
    )
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-3))
    history = model.fit(X_tr, y_tr, epochs=30, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    assert model.evaluate(X_te, y_te)["accuracy"] >= 0.96


def test_validation_split_with_shuffle_permutes_only_the_training_part():
    X, y = blobs(20)
    fitted = make(dtype="float64", seed=3)
    fitted.fit(X, y, epochs=2, batch_size=6, validation_split=0.25, verbose=0)
    manual = make(dtype="float64", seed=3)
    for _ in range(2):
        order = manual.rng.permutation(15)
        for start in range(0, 15, 6):
            manual.train_step(X[order[start : start + 6]], y[order[start : start + 6]])
    for a, b in zip(fitted.get_weights(), manual.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_validation_split_must_be_a_number():
    X, y = blobs()
    with pytest.raises(TypeError, match="validation_split must be a real number"):
        make().fit(X, y, validation_split=None, verbose=0)
