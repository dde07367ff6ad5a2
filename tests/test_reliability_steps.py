"""A refused step changes nothing (layer state included), optimizer state never turns
non-finite silently, and Ctrl-C leaves a consistent model (README: "What is
guaranteed"). Both backends through the ``backend`` fixture."""

import numpy as np
import pytest

import gpunn
from gpunn import layers, optim
from gpunn.arena import ParamSpec
from gpunn.callbacks import Callback, TerminateOnNaN
from gpunn.errors import NonFiniteError
from gpunn.layers import BatchNorm, Dense, Dropout


def bn_model(backend, optimizer=None, seed=0):
    model = gpunn.Sequential(
        [Dense(8), BatchNorm(), layers.Activation("relu"), Dropout(0.2), Dense(3)],
        input_dim=4,
        backend=backend,
        seed=seed,
    )
    model.compile("softmax_cross_entropy", optimizer or optim.Adam(1e-2))
    return model


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), np.arange(n) % 3


def everything(model) -> dict:
    """Bytes of parameters and optimizer buffers, host optimizer state, layer state
    and the dropout generator's state."""
    host = model.backend.to_numpy
    opt = model.optimizer
    found = {"params": host(model.arena.params).tobytes(), **opt.host_state()}
    found.update({k: host(v).tobytes() for k, v in opt.state.items()})
    found.update({k: np.asarray(v).tobytes() for k, v in model.get_state().items()})
    dropout = next(layer for layer in model.layers if isinstance(layer, Dropout))
    found["dropout"] = repr(model.backend.generator_state(dropout.generator))
    return found


class ExtremeRowAt(Callback):
    """At ``batch`` (0-based, first epoch) replaces the batch's input by one with a
    finite but extreme row, after snapshotting the model."""

    def __init__(self, batch):
        self.batch, self.before = batch, None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.batch:
            self.before = everything(self.model)


# finite in float32: the batch variance overflows (loss and gradients stay finite),
# or the first layer's outputs do (the loss is NaN)
EXTREMES = {3e37: "state of batchnorm_1 would not be", 3e38: r"loss \(nan\)"}


def extreme(X, row, value=3e37):
    X = X.copy()
    X[row] = value
    return X


@pytest.mark.parametrize("value", sorted(EXTREMES))
@pytest.mark.parametrize("accumulate", [1, 2])
def test_refused_step_leaves_batchnorm_and_dropout_state(backend, accumulate, value):
    model = bn_model(backend)
    X, y = data()
    hook = ExtremeRowAt(2 * accumulate)  # the group of batches 5 (and 6) with 4/batch
    X = extreme(X, 4 * 2 * accumulate + 1, value)
    with (
        np.errstate(all="ignore"),
        pytest.raises(NonFiniteError, match=EXTREMES[value]),
    ):
        model.fit(
            X,
            y,
            batch_size=4,
            shuffle=False,
            verbose=0,
            callbacks=[hook],
            accumulate_steps=accumulate,
        )
    assert everything(model) == hook.before
    state = model.get_state()
    assert all(np.isfinite(v).all() for v in state.values())
    assert int(state["batchnorm_1.num_batches_tracked"]) == 2 * accumulate


def test_refused_train_step_changes_nothing(backend):
    model = bn_model(backend)
    X, y = data(8)
    model.train_step(X, y)
    before = everything(model)
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError, match="batchnorm"):
        model.train_step(extreme(X, 3), y)
    assert everything(model) == before
    model.train_step(X, y)  # trains on, from the same state
    assert model.optimizer.steps == 2


def test_skipped_step_then_checkpoint_keeps_a_loadable_good_state(backend, tmp_path):
    """TerminateOnNaN skips the step; the epoch-end checkpoint (pruning the older
    one) holds finite running statistics and loads."""
    model = bn_model(backend)
    X, y = data()
    path = str(tmp_path / "ckpt-{epoch}.safetensors")
    first = gpunn.ModelCheckpoint(path, keep_last=1)
    model.fit(X, y, batch_size=4, verbose=0, callbacks=[first])
    before = model.get_state()
    saved = gpunn.ModelCheckpoint(path, keep_last=1)
    with np.errstate(all="ignore"):
        model.fit(
            extreme(X, 9),
            y,
            batch_size=4,
            shuffle=False,
            verbose=0,
            callbacks=[TerminateOnNaN(), saved],
        )
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1
    loaded = gpunn.load(tmp_path / files[0], backend=backend)
    state = loaded.get_state()
    assert all(np.isfinite(v).all() for v in state.values())
    tracked = "batchnorm_1.num_batches_tracked"
    assert int(state[tracked]) == int(before[tracked]) + 2  # batches 1-2 of 8


def test_accumulated_batches_all_reach_the_running_statistics(backend):
    """Four batches accumulated into two steps: the statistics of all four are
    committed (count 4), and a standalone layer still updates at once."""
    model = bn_model(backend)
    X, y = data(16)
    model.fit(X, y, batch_size=4, shuffle=False, verbose=0, accumulate_steps=2)
    assert int(model.get_state()["batchnorm_1.num_batches_tracked"]) == 4
    alone = model.layers[1]
    before = alone.get_state()["running_mean"]
    alone.forward(backend.asarray(X[:4, :] @ np.ones((4, 8), np.float32)), True)
    assert not np.array_equal(alone.get_state()["running_mean"], before)


# ------------------------------------------------------------------ rule 3
class Scale(layers.Layer):
    """``y = s * x`` with one trainable ``s``; its gradient is ``grad`` when set."""

    grad = None

    def build(self, n_in, rng):
        super().build(n_in, rng)
        return [ParamSpec("s", (1,), np.ones(1))]

    def forward(self, x, training=False):
        self._x = x
        return x * self.params["s"]

    def backward(self, dy):
        g = (dy * self._x).sum() if self.grad is None else self.grad
        self.grads["s"][...] = g
        return dy * self.params["s"]


OPTIMIZERS = {
    "adam": lambda: optim.Adam(1e-3),
    "rmsprop": lambda: optim.RMSprop(1e-3),
    "adagrad": lambda: optim.Adagrad(1e-3),
    "lamb": lambda: optim.LAMB(1e-3),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_gradient_whose_square_overflows_is_refused(backend, name):
    model = gpunn.Sequential(
        [Dense(4), Scale(), Dense(2)], input_dim=3, backend=backend, seed=0
    )
    model.compile("mse", OPTIMIZERS[name]())
    X = np.ones((4, 3))
    y = np.zeros((4, 2))
    model.train_step(X, y)
    host = model.backend.to_numpy
    before = {k: host(v).copy() for k, v in model.optimizer.state.items()}
    params = host(model.arena.params).copy()
    model.layers[1].grad = 1e20  # finite in float32; its square is not
    with pytest.raises(NonFiniteError, match="too large for float32"):
        model.train_step(X, y)
    assert model.optimizer.steps == 1
    np.testing.assert_array_equal(host(model.arena.params), params)
    for key, value in model.optimizer.state.items():
        np.testing.assert_array_equal(host(value), before[key])
        assert np.isfinite(host(value)).all()


def test_overflowing_square_is_fine_in_float64(backend):
    grads = np.zeros(9)
    grads[4] = 1e20
    for dtype, ok in [(np.float32, False), (np.float64, True)]:
        flag = backend.step_is_finite(0.5, backend.asarray(grads.astype(dtype)))
        assert bool(flag) is ok


# ------------------------------------------------------------------ rule 6: Ctrl-C
def wide_model(width, seed=0, backend="cpu"):
    model = gpunn.Sequential(
        [Dense(width, activation="relu"), BatchNorm(), Dense(3)],
        input_dim=width,
        backend=backend,
        seed=seed,
    )
    model.compile("softmax_cross_entropy", optim.Adam(1e-3))
    return model


def consistent_state(model) -> dict:
    host = model.backend.to_numpy
    opt = model.optimizer
    found = {"params": host(model.arena.params).tobytes(), **opt.host_state()}
    found.update({k: host(v).tobytes() for k, v in opt.state.items()})
    found.update({k: np.asarray(v).tobytes() for k, v in model.get_state().items()})
    return found


@pytest.fixture
def sigint_raises(monkeypatch):
    """Python's default SIGINT handler (KeyboardInterrupt) for the test."""
    import signal

    monkeypatch.setattr(signal, "getsignal", signal.getsignal)  # restored after
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield signal
    signal.signal(signal.SIGINT, previous)


# arena sizes of the three CPU update paths: one call, blocks, blocks over threads
PATHS = {"one call": 24, "blocks": 420, "threads": 1100}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_ctrl_c_inside_the_update_finishes_the_step(monkeypatch, sigint_raises, path):
    """A SIGINT delivered while Adam updates (after its first block) is raised once
    the step is complete: parameters, moments, step count and BatchNorm statistics
    all equal an uninterrupted run's after the same steps; fit then goes on."""
    from gpunn.backends import updates

    width = PATHS[path]
    X = np.random.default_rng(0).standard_normal((24, width)).astype(np.float32)
    y = np.arange(24) % 3
    model = wide_model(width)
    assert (model.count_params() > 2 * updates.BLOCK) == (path != "one call")
    if path == "threads" and (
        model.count_params() < updates.PARALLEL_MIN or updates._pool()[1] < 2
    ):
        pytest.skip("the threaded update needs 2 cores and a large arena")
    adam, calls = updates.adam_, []
    signal_at = 2 * _calls_per_step(model, updates) + 1  # step 3's first block

    def interrupted_adam(*args, **kwargs):
        adam(*args, **kwargs)
        calls.append(1)
        if len(calls) == signal_at:
            sigint_raises.raise_signal(sigint_raises.SIGINT)

    monkeypatch.setattr(updates, "adam_", interrupted_adam)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    monkeypatch.setattr(updates, "adam_", adam)
    after = consistent_state(model)
    steps = model.optimizer.steps
    assert steps == 3
    reference = wide_model(width)
    for i in range(steps):
        reference.train_step(X[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8])
    assert after == consistent_state(reference)
    model.fit(X, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert model.optimizer.steps == steps + 3


def _calls_per_step(model, updates) -> int:
    """How many times Adam's update function runs per step on the CPU."""
    n = model.count_params()
    if n <= 2 * updates.BLOCK:
        return 1
    return -(-n // updates.BLOCK)


def test_ctrl_c_between_steps_then_fit_goes_on(backend):
    class StopAt(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt

    model = bn_model(backend)
    X, y = data(24)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, batch_size=4, verbose=0, callbacks=[StopAt()])
    assert model.optimizer.steps == 3
    assert int(model.get_state()["batchnorm_1.num_batches_tracked"]) == 3
    model.fit(X, y, batch_size=4, verbose=0)
    assert model.optimizer.steps == 9


def test_adagrad_sum_that_would_overflow_is_refused(backend):
    """Each square is finite (1e38), but Adagrad's sum of them only grows: the
    step that would push it past float32's largest value is refused."""
    model = gpunn.Sequential(
        [Dense(4), Scale(), Dense(2)], input_dim=3, backend=backend, seed=0
    )
    model.compile("mse", optim.Adagrad(1e-3))
    X, y = np.ones((4, 3)), np.zeros((4, 2))
    model.layers[1].grad = 1e19
    for _ in range(3):  # 3e38: still finite
        model.train_step(X, y)
    host = model.backend.to_numpy
    before = host(model.optimizer.state["sum"]).copy()
    with pytest.raises(NonFiniteError, match="Adagrad's sum of squared gradients"):
        model.train_step(X, y)
    assert model.optimizer.steps == 3
    np.testing.assert_array_equal(host(model.optimizer.state["sum"]), before)
    assert np.isfinite(before).all()


def test_ctrl_c_in_train_step_and_between_steps(monkeypatch, sigint_raises):
    """train_step holds a SIGINT in its update back to the end of the step; in fit,
    one between steps is raised at once; the handler is restored after both."""
    from gpunn.backends import updates

    signal = sigint_raises
    model = wide_model(24)
    X = np.random.default_rng(0).standard_normal((16, 24)).astype(np.float32)
    y = np.arange(16) % 3
    adam = updates.adam_

    def interrupted_adam(*args, **kwargs):
        adam(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(updates, "adam_", interrupted_adam)
    with pytest.raises(KeyboardInterrupt):
        model.train_step(X[:8], y[:8])
    monkeypatch.setattr(updates, "adam_", adam)
    reference = wide_model(24)
    reference.train_step(X[:8], y[:8])
    assert consistent_state(model) == consistent_state(reference)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    class SignalAt(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, batch_size=4, verbose=0, callbacks=[SignalAt()])
    assert model.optimizer.steps == 2  # raised right after the callback's step
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_adagrad_sums_far_from_the_limit_are_not_refused():
    """The guard is per entry: many large but safe sums do not add up to a refusal."""
    model = gpunn.Sequential(
        [gpunn.layers.Dense(500)], input_dim=200, seed=0, backend="cpu"
    )
    model.compile("mse", gpunn.optim.Adagrad(1e-3))
    X = np.full((4, 200), 1e-3, np.float32)
    y = np.zeros((4, 500), np.float32)
    model.train_step(X, y)
    model.optimizer.state["sum"][:] = 1e34  # 1e5 entries, each 3e4 below the max
    model.train_step(X, y)
    assert model.optimizer.steps == 2
