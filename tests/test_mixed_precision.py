"""Mixed precision (``Sequential(precision="mixed_bfloat16" | "mixed_float16")``): float32
master weights, gradients and optimizer state; 16-bit layers written by the optimizer;
dynamic loss scaling; checkpoints and model files; on the reference backend and, for
the kernels, on the emulator (and a GPU when there is one)."""

import sys

import numpy as np
import pytest

import gpunn
from gpunn import datasets
from gpunn.errors import NonFiniteError
from gpunn.layers import BatchNorm, Dense, Dropout
from gpunn.optim import LossScaler

pytest.importorskip("ml_dtypes")
MIXED = ["mixed_bfloat16", "mixed_float16"]


def _model(precision, backend="cpu", seed=0, **compile_kwargs):
    model = gpunn.Sequential(
        [
            Dense(32, activation="relu"),
            BatchNorm(),
            Dropout(0.1),
            Dense(16, activation="gelu", kernel_regularizer="l2"),
            Dense(4),
        ],
        input_dim=8,
        backend=backend,
        seed=seed,
        precision=precision,
    )
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-2), **compile_kwargs)
    return model


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 8)).astype(np.float32)
    return X, (X[:, :4].argmax(1) + (X[:, 4] > 1)) % 4


@pytest.mark.parametrize("precision", MIXED)
def test_the_arena_stays_float32_and_the_layers_compute_in_16_bit(precision):
    model = _model(precision)
    half = "bfloat16" if precision == "mixed_bfloat16" else "float16"
    arena = model.arena
    assert arena.params.dtype == arena.grads.dtype == np.float32
    assert arena.compute.dtype.name == half
    assert all(buf.dtype == np.float32 for buf in model.optimizer.state.values())
    X, y = _data()
    model.train_step(X[:32], y[:32])
    # the optimizer wrote the 16-bit copy: the masters rounded, bit for bit
    np.testing.assert_array_equal(
        model.backend.to_numpy(arena.compute), arena.params.astype(arena.compute.dtype)
    )
    assert model.layers[0].compute_params["kernel"].dtype.name == half
    out = model.predict(X)
    assert out.dtype == np.float32 and out.shape == (96, 4)
    assert all(w.dtype == np.float32 for w in model.get_weights())


def test_the_policy_is_checked():
    with pytest.raises(ValueError, match="precision must be one of"):
        gpunn.Sequential([Dense(2)], precision="float16")
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        gpunn.Sequential([Dense(2)], dtype="float64", precision="mixed_bfloat16")
    model = gpunn.Sequential([Dense(2)], input_dim=3, dtype="float64")
    assert model.policy.name == "float32" and model.arena.compute is None


def test_bfloat16_without_ml_dtypes_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    with pytest.raises(ImportError, match=r"gpunn\[cpu\]"):
        gpunn.Sequential([Dense(2)], precision="mixed_bfloat16")


def test_weights_written_any_way_reach_the_16_bit_copy():
    model = _model("mixed_bfloat16")
    X, _ = _data()
    weights = [np.full_like(w, 0.01) for w in model.get_weights()]
    model.set_weights(weights)
    first = model.predict(X)
    reference = _model("mixed_bfloat16")
    reference.set_weights(weights)
    np.testing.assert_array_equal(first, reference.predict(X))
    model.layers[-1].params["bias"][...] = 1.0  # through a layer's view
    np.testing.assert_allclose(model.predict(X) - first, 0.99, atol=0.02)


def test_loss_scaling_defaults_follow_keras_and_torch():
    assert isinstance(_model("mixed_float16").loss_scaler, LossScaler)
    assert _model("mixed_bfloat16").loss_scaler is None
    assert _model("float32").loss_scaler is None
    assert _model("mixed_float16", loss_scale=None).loss_scaler is None
    static = _model("mixed_bfloat16", loss_scale=256).loss_scaler
    assert static.scale == 256
    with pytest.raises(ValueError, match="loss_scale must be"):
        _model("mixed_float16", loss_scale="static")


@pytest.mark.parametrize("scale", [2.0**8, 1024.0])
def test_a_scaled_step_equals_an_unscaled_one(scale):
    """Scaling the loss gradient and unscaling the float32 gradients (penalties
    included) changes the update by rounding only: dynamic and static scales."""
    X, y = _data()
    steps = []
    dynamic = LossScaler(init_scale=scale)
    for loss_scale in (None, dynamic if scale == 2.0**8 else scale):
        model = _model("mixed_float16", loss_scale=loss_scale)
        model.train_step(X[:48], y[:48])
        steps.append(model.get_weights())
    for a, b in zip(*steps):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_an_overflowing_step_is_skipped_and_the_scale_backs_off():
    X, y = _data()
    model = _model("mixed_float16", loss_scale=LossScaler(init_scale=2.0**40))
    before = model.get_weights()
    state = {k: v.copy() for k, v in model.optimizer.state.items()}
    model.train_step(X[:32], y[:32])  # 2**40 overflows float16: skipped
    scaler = model.loss_scaler
    assert scaler.skipped_steps == 1 and scaler.scale == 2.0**39
    assert model.optimizer.steps == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for name, buf in model.optimizer.state.items():
        np.testing.assert_array_equal(buf, state[name])
    history = model.fit(X, y, epochs=4, batch_size=16, verbose=0)
    assert scaler.scale < 2.0**39 and model.optimizer.steps > 0
    logs = history.history
    assert logs["loss_scale"][-1] == scaler.scale
    assert logs["skipped_steps"][-1] == scaler.skipped_steps
    assert np.isfinite(logs["loss"]).all()


def test_a_learning_rate_that_overflows_float16_recovers_through_the_scaler():
    """A lr that drives float16 activations past 65504 makes steps overflow: the
    scaler skips them and training goes on instead of failing."""
    X, y = _data(256)
    model = _model("mixed_float16", seed=1)
    model.optimizer.lr = 3.0
    history = model.fit(X, y, epochs=3, batch_size=32, verbose=0)
    assert model.loss_scaler.skipped_steps > 0
    assert np.isfinite(history.history["loss"][-1])


def test_a_scale_below_two_to_minus_24_raises_non_finite():
    """A loss that overflows float32 at any scale: the model itself is not finite."""
    model = gpunn.Sequential(
        [Dense(2)], input_dim=3, seed=0, precision="mixed_float16", backend="cpu"
    )
    model.compile("mse", "sgd", loss_scale=LossScaler(init_scale=2.0**-22))
    X, y = np.ones((4, 3), np.float32), np.full((4, 2), 3e38, np.float32)
    model.train_step(X, y)
    model.train_step(X, y)
    assert model.loss_scaler.scale == 2.0**-24
    with pytest.raises(NonFiniteError, match=r"below 2\*\*-24"):
        model.train_step(X, y)


@pytest.mark.parametrize("precision", MIXED)
def test_digits_reach_the_float32_accuracy(precision):
    X, y = datasets.load_digits()
    X_tr, X_te, y_tr, y_te = datasets.train_test_split(
        X, y, test_size=0.2, seed=0, stratify=True
    )
    X_tr, X_te = datasets.standardize(X_tr, X_te)
    scores = {}
    for name in ("float32", precision):
        model = gpunn.Sequential(
            [Dense(128, activation="relu"), Dense(128, activation="relu"), Dense(10)],
            seed=0,
            backend="cpu",
            precision=name,
        )
        model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-3))
        model.fit(X_tr, y_tr, epochs=12, batch_size=64, verbose=0)
        scores[name] = model.evaluate(X_te, y_te)["accuracy"]
    assert scores["float32"] > 0.95
    assert abs(scores[precision] - scores["float32"]) <= 0.01


@pytest.mark.parametrize("precision", MIXED)
def test_mixed_models_save_float32_masters_and_load_either_way(tmp_path, precision):
    model = _model(precision)
    X, y = _data()
    model.fit(X, y, epochs=2, batch_size=32, verbose=0)
    path = tmp_path / "mixed.safetensors"
    model.save(path)
    loaded = gpunn.load(path, backend="cpu")
    assert loaded.policy.name == precision
    assert (loaded.loss_scaler is None) == (model.loss_scaler is None)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    plain = _model("float32")
    plain.set_weights(gpunn.load(path, backend="cpu", compile=False).get_weights())
    for a, b in zip(plain.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_resumed_float16_run_is_bitwise_with_its_loss_scaler(tmp_path):
    X, y = _data()
    scaler = {"init_scale": 2.0**20, "growth_interval": 3}

    def run(**fit):
        model = _model("mixed_float16", loss_scale=LossScaler(**scaler))
        history = model.fit(X, y, batch_size=16, verbose=0, **fit)
        return model, history

    whole, _ = run(epochs=4)
    checkpoint = gpunn.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.safetensors"))
    run(epochs=2, callbacks=[checkpoint])
    resumed, _ = run(epochs=4, resume_from=str(tmp_path / "ckpt-2.safetensors"))
    assert resumed.loss_scaler.state_dict() == whole.loss_scaler.state_dict()
    assert whole.loss_scaler.skipped_steps > 0  # the state mattered
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_another_precision_is_refused(tmp_path):
    X, y = _data()
    model = _model("mixed_float16")
    model.fit(
        X,
        y,
        epochs=1,
        verbose=0,
        callbacks=[gpunn.ModelCheckpoint(str(tmp_path / "c.safetensors"))],
    )
    other = _model("mixed_bfloat16")
    with pytest.raises(gpunn.CheckpointError, match="precision"):
        other.fit(
            X, y, epochs=2, verbose=0, resume_from=str(tmp_path / "c.safetensors")
        )


@pytest.mark.parametrize("precision", MIXED)
def test_kernel_backends_train_like_the_reference(kernel_backend, precision):
    """The 16-bit kernels (dense + activation, batch norm, dropout, the optimizer's
    copy write) against the reference, within the README's 16-bit training row."""
    X, y = _data(64)
    runs = []
    for backend in ("cpu", kernel_backend):
        model = _model(precision, backend=backend)
        losses = [
            model.train_step(X[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)
        ]
        runs.append((losses, model.get_weights()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=2e-2, atol=2e-2)
    for a, b in zip(runs[1][1], runs[0][1]):
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2)


def test_an_optimizer_subclass_with_its_own_update_gets_its_weights_recast():
    """A subclass that overrides _update (and so writes no 16-bit copy) is not
    trusted to have written one: the next forward re-casts the masters."""

    class HalfStepSGD(gpunn.optim.SGD):
        def _update(self, t, lr):
            self.arena.params -= (lr / 2) * self.arena.grads

    assert HalfStepSGD.writes_param_copy is False and gpunn.optim.SGD.writes_param_copy
    model = gpunn.Sequential(
        [Dense(8, activation="relu"), Dense(4)],
        input_dim=8,
        seed=0,
        backend="cpu",
        precision="mixed_bfloat16",
    )
    model.compile("softmax_cross_entropy", HalfStepSGD(0.5))
    X, y = _data()
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    arena = model.arena
    model.forward(model.backend.asarray(X[:2]))  # a forward brings the copy up
    np.testing.assert_array_equal(
        arena.compute, arena.params.astype(arena.compute.dtype)
    )


def test_the_scaled_path_keeps_every_guard_of_the_finite_check():
    """With loss scaling, a step that would overflow Adagrad's sum (finite
    gradients) is skipped like an overflowing gradient, not applied, and the sum
    stays finite."""
    model = gpunn.Sequential(
        [Dense(2)], input_dim=3, seed=0, backend="cpu", precision="mixed_bfloat16"
    )
    model.compile("mse", gpunn.optim.Adagrad(0.1), loss_scale=LossScaler(init_scale=1))
    X, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    model.train_step(X, y)  # binds the state
    model.optimizer.state["sum"][:] = np.finfo(np.float32).max
    before = model.get_weights()
    model.train_step(X, np.full((4, 2), 1e16, np.float32))  # g**2 ~ 1e32: inf sum
    assert model.loss_scaler.skipped_steps == 1
    assert np.isfinite(model.optimizer.state["sum"]).all()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_static_scale_is_refused_as_an_unscaled_step_would_be():
    X, y = np.ones((8, 3), np.float32), np.full((8, 2), 3e38, np.float32)

    def model(**compile_kwargs):
        m = gpunn.Sequential(
            [Dense(2)], input_dim=3, seed=0, backend="cpu", precision="mixed_float16"
        )
        m.compile("mse", "sgd", loss_scale=128, **compile_kwargs)
        return m

    with pytest.raises(NonFiniteError, match="at epoch 1, batch 1"):
        model().fit(X, y, epochs=1, batch_size=4, verbose=0)
    stopped = model()
    stopped.fit(
        X,
        y,
        epochs=3,
        batch_size=4,
        verbose=0,
        callbacks=[gpunn.callbacks.TerminateOnNaN()],
    )
    assert stopped.stop_training and stopped.optimizer.steps == 0
    applied = model()
    applied.check_finite = False
    applied.train_step(X[:4], y[:4])
    assert applied.optimizer.steps == 1


def test_early_stopping_restores_weights_not_the_loss_scaler():
    X, y = _data()
    model = _model("mixed_float16", loss_scale=LossScaler(init_scale=2.0**30))
    stop = gpunn.callbacks.EarlyStopping("loss", patience=1, restore_best_weights=True)
    history = model.fit(X, y, epochs=6, batch_size=16, verbose=0, callbacks=[stop])
    assert model.loss_scaler.skipped_steps == history.history["skipped_steps"][-1] > 0
    assert model.loss_scaler.get_config()["init_scale"] == 2.0**30  # kept on loads


def test_a_failed_first_fit_leaves_the_loss_scaler_as_it_was():
    model = gpunn.Sequential(
        [Dense(2)], seed=0, backend="cpu", precision="mixed_float16"
    )
    model.compile("mse", "sgd", loss_scale=LossScaler(init_scale=2.0**-20))
    X, y = np.ones((4, 3), np.float32), np.full((4, 2), 3e38, np.float32)
    with pytest.raises(NonFiniteError):
        model.fit(X, y, epochs=5, batch_size=4, verbose=0)
    assert not model.built
    assert model.loss_scaler.scale == 2.0**-20 and model.loss_scaler.skipped_steps == 0


def test_a_checkpoint_of_another_loss_scaling_is_refused(tmp_path):
    X, y = _data()
    path = str(tmp_path / "c.safetensors")
    model = _model("mixed_float16")
    model.fit(X, y, epochs=1, verbose=0, callbacks=[gpunn.ModelCheckpoint(path)])
    for scale, match in [
        (256, "loss_scaler.growth_interval"),
        (None, "loss_scaler: checkpoint a loss scaler, model none"),
    ]:
        other = _model("mixed_float16", loss_scale=scale)
        with pytest.raises(gpunn.CheckpointError, match=match):
            other.fit(X, y, epochs=2, verbose=0, resume_from=path)


def test_a_callback_writing_weights_mid_fit_reaches_the_next_forward():
    """A max-norm constraint written through layer views at each batch end: the
    next batch's 16-bit weights are the constrained masters."""

    class MaxNorm(gpunn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            kernel = self.model.layers[0].params["kernel"]
            np.clip(kernel, -0.05, 0.05, out=kernel)

    class Spy(gpunn.callbacks.Callback):
        writes_weights = False

        def on_train_batch_begin(self, batch, logs=None):
            arena = self.model.arena
            arena.sync_compute()  # what the coming forward will use
            np.testing.assert_array_equal(
                arena.compute, arena.params.astype(arena.compute.dtype)
            )

    X, y = _data()
    model = _model("mixed_bfloat16")
    model.fit(X, y, epochs=2, batch_size=16, verbose=0, callbacks=[MaxNorm(), Spy()])
    assert np.abs(model.layers[0].params["kernel"]).max() <= 0.05
