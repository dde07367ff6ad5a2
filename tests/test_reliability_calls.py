"""A failed call changes nothing, building and binding included; a layer belongs to one
model; one training call at a time per model (README: "What is guaranteed")."""

import gc
import threading

import numpy as np
import pytest

import gpunn
from gpunn import optim
from gpunn.callbacks import Callback
from gpunn.layers import BatchNorm, Dense


def data(n=20, width=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, width)), np.arange(n) % 3


def fresh(backend="cpu", bn=False, optimizer=None):
    body = [Dense(6, activation="relu")] + ([BatchNorm()] if bn else [])
    model = gpunn.Sequential([*body, Dense(3)], backend=backend, seed=0)
    model.compile("softmax_cross_entropy", optimizer or optim.Adam(1e-2))
    return model


def weights(model):
    return [w.tobytes() for w in model.get_weights()]


def trained(backend="cpu", **kwargs):
    model = fresh(backend)
    X, y = data()
    model.fit(X, y, batch_size=5, verbose=0, **kwargs)
    return weights(model)


# ------------------------------------------------------------------ rule 4
FAILING_CALLS = {
    "fit(X.T, y)": lambda m, X, y: m.fit(X.T, y, verbose=0),
    "fit, bad validation_data": lambda m, X, y: m.fit(
        X, y, validation_data=(X[:, :3], y), verbose=0
    ),
    "fit, bad sample_weight": lambda m, X, y: m.fit(
        X, y, sample_weight=np.ones(3), verbose=0
    ),
    "fit, bad callbacks": lambda m, X, y: m.fit(X, y, callbacks=[1], verbose=0),
    "evaluate(X.T, y)": lambda m, X, y: m.evaluate(X.T, y),
    "evaluate, batch_size=0": lambda m, X, y: m.evaluate(X, y, batch_size=0),
    "train_step(X.T, y)": lambda m, X, y: m.train_step(X.T, y),
    "adapt without adaptable layers": lambda m, X, y: m.adapt(X),
}


@pytest.mark.parametrize("call", sorted(FAILING_CALLS))
def test_failed_call_leaves_an_unbuilt_model_unbuilt(backend, call):
    model = fresh(backend)
    X, y = data()
    with pytest.raises((ValueError, TypeError)):
        FAILING_CALLS[call](model, X, y)
    assert not model.built and model.input_dim is None
    assert all(layer.n_in is None for layer in model.layers)
    X, y = data()
    model.fit(X, y, batch_size=5, verbose=0)  # as if the failed call never was
    assert weights(model) == trained(backend)


def test_batch_of_one_for_batchnorm_leaves_the_model_unbuilt():
    model = fresh(bn=True)
    X, y = data(21)
    with pytest.raises(ValueError, match="batch_size=5"):
        model.fit(X, y, batch_size=5, verbose=0)
    assert not model.built


def test_failed_first_step_leaves_the_model_unbuilt():
    model = fresh()
    X, y = data()
    X[3] = 1e38  # finite; the logits overflow
    with np.errstate(all="ignore"), pytest.raises(gpunn.NonFiniteError):
        model.train_step(X, y)
    assert not model.built


def test_build_that_fails_half_way_changes_nothing():
    norm = BatchNorm()
    norm.set_state(
        {
            "running_mean": np.zeros(7),
            "running_var": np.ones(7),
            "num_batches_tracked": np.array(3),
        }
    )
    dense = Dense(6, activation="relu")
    model = gpunn.Sequential([dense, norm, Dense(3)], seed=0)
    rng_before = model.rng.bit_generator.state
    with pytest.raises(ValueError, match="7 features"):
        model.build(4)
    assert not model.built and model.rng.bit_generator.state == rng_before
    assert dense.n_in is None and dense.activation.n_in is None
    assert all(layer.name is None for layer in model.layers)
    assert int(norm.get_state()["num_batches_tracked"]) == 3


def test_optimizer_of_another_model_is_refused_and_binds_nothing():
    shared = optim.Adam(1e-2)
    first, second = fresh(optimizer=shared), fresh(optimizer=shared)
    X, y = data()
    first.fit(X, y, batch_size=5, verbose=0)
    before, steps = weights(first), shared.steps
    for _ in range(2):  # the retry is refused the same way
        with pytest.raises(ValueError, match="belongs to another model"):
            second.fit(X, y, batch_size=5, verbose=0)
        assert not second.built
    assert weights(first) == before and shared.steps == steps
    built = gpunn.Sequential([Dense(3)], input_dim=4, seed=0)
    with pytest.raises(ValueError, match="belongs to another model"):
        built.compile("softmax_cross_entropy", shared)
    assert built.optimizer is None and built.loss is None
    unbuilt = gpunn.Sequential([Dense(3)], seed=0)
    with pytest.raises(ValueError, match="belongs to another model"):
        unbuilt.compile("softmax_cross_entropy", shared)
    second.compile("softmax_cross_entropy", optim.Adam(1e-2))
    second.fit(X, y, batch_size=5, verbose=0)
    assert weights(second) == trained()


# ------------------------------------------------------------------ rule 5
def test_layers_of_a_built_model_are_refused_by_another():
    X, _ = data()
    first = fresh()
    first.build(4)
    before = first.predict(X)
    with pytest.raises(ValueError, match=r"dense_0 \(Dense\) already belongs"):
        gpunn.Sequential([first.layers[0], Dense(2)])
    other = gpunn.Sequential([Dense(2)])
    with pytest.raises(ValueError, match="already belongs"):
        other.add(first.layers[1])
    np.testing.assert_array_equal(first.predict(X), before)


def test_layers_shared_before_building_are_claimed_by_the_first_build():
    shared = Dense(3)
    first, second = gpunn.Sequential([shared]), gpunn.Sequential([shared])
    first.build(4)
    with pytest.raises(ValueError, match="already belongs"):
        second.build(4)
    assert not second.built and first.layers[0].n_in == 4


def test_the_same_layer_twice_is_refused():
    layer = Dense(4)
    with pytest.raises(ValueError, match="appears twice"):
        gpunn.Sequential([layer, layer])


def test_layers_of_a_model_that_is_gone_can_be_reused():
    layers = [Dense(3)]
    model = gpunn.Sequential(layers, input_dim=4)
    del model
    gc.collect()
    gpunn.Sequential(layers, input_dim=5)


# ------------------------------------------------------------------ concurrency
class Pause(Callback):
    """Holds the fit at its second batch until ``release`` is set."""

    def __init__(self):
        self.reached, self.release = threading.Event(), threading.Event()

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1:
            self.reached.set()
            assert self.release.wait(30)


def test_a_second_training_call_from_another_thread_raises():
    model = fresh()
    X, y = data()
    pause, errors = Pause(), []

    def run():
        try:
            model.fit(X, y, batch_size=5, verbose=0, callbacks=[pause])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert pause.reached.wait(30)
    try:
        for call in (
            lambda: model.fit(X, y, verbose=0),
            lambda: model.train_step(X, y),
            lambda: model.lr_find(X, y, steps=3),
        ):
            with pytest.raises(RuntimeError, match="fit is already running"):
                call()
    finally:
        pause.release.set()
        thread.join(30)
    assert not errors and model.optimizer.steps == 4
    model.fit(X, y, batch_size=5, verbose=0)  # free again
    assert model.optimizer.steps == 8


def test_fit_from_a_callback_of_fit_raises():
    class Nested(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.fit(X, y, verbose=0)

    model = fresh()
    X, y = data()
    with pytest.raises(RuntimeError, match="fit cannot start: fit is already"):
        model.fit(X, y, verbose=0, callbacks=[Nested()])
    model.evaluate(X, y)  # evaluate stays free inside and outside fit
