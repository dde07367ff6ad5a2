"""The model side of the toolkit: gradient accumulation, sample weights, the fused
softmax/sigmoid head, regularization penalties in the loss, adapt, layer state and the
LR range test."""

import numpy as np
import pytest
from test_model import blobs, make

import gpunn
from gpunn import layers, losses, optim, regularizers
from gpunn.errors import InvalidInputError
from gpunn.layers import Dense


def mlp(
    backend="cpu", dtype="float64", head=None, seed=0, loss="softmax_cross_entropy"
):
    body = [Dense(8, activation="tanh"), Dense(3, activation=head)]
    model = gpunn.Sequential(body, input_dim=6, dtype=dtype, backend=backend, seed=seed)
    model.compile(loss, optim.SGD(0.1, momentum=0.9))
    return model


def assert_same_weights(a, b, **tol):
    """``a``, ``b``: models or lists of weights."""
    a, b = (m if isinstance(m, list) else m.get_weights() for m in (a, b))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if tol:
            np.testing.assert_allclose(x, y, **tol)
        else:
            np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ accumulation
@pytest.mark.parametrize("n", [36, 31])  # whole groups, and a short last group
def test_accumulated_batches_equal_one_large_batch(backend, n):
    X, y = blobs(n)
    small = mlp(backend)
    small.fit(
        X, y, epochs=2, batch_size=4, shuffle=False, verbose=0, accumulate_steps=3
    )
    large = mlp(backend)
    large.fit(X, y, epochs=2, batch_size=12, shuffle=False, verbose=0)
    assert small.optimizer.steps == large.optimizer.steps == 2 * -(-n // 12)
    assert_same_weights(small, large, rtol=1e-12, atol=1e-14)


def test_accumulate_steps_is_validated():
    X, y = blobs(12)
    with pytest.raises(ValueError, match="accumulate_steps"):
        mlp().fit(X, y, accumulate_steps=0, verbose=0)


# ------------------------------------------------------------------ sample weights
def test_sample_weights_weight_each_loss_over_the_batch_size(backend):
    X, y = blobs(10)
    w = np.linspace(0.0, 2.0, 10)
    model = mlp(backend)
    per_sample = [model.evaluate(X[i : i + 1], y[i : i + 1])["loss"] for i in range(10)]
    weighted = model.evaluate(X, y, sample_weight=w)["loss"]
    assert weighted == pytest.approx(np.dot(w, per_sample) / 10, rel=1e-12)
    ones = model.evaluate(X, y, sample_weight=np.ones(10))["loss"]
    assert ones == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-14)


def test_zero_weights_remove_samples_from_the_gradient(backend):
    X, y = blobs(12)
    keep = np.arange(12) < 6
    weighted = mlp(backend)
    weighted.train_step(X, y, sample_weight=keep * 2.0)  # 2 = 12 / 6 restores the mean
    subset = mlp(backend)
    subset.train_step(X[keep], y[keep])
    assert_same_weights(weighted, subset, rtol=1e-12, atol=1e-15)


def test_fit_shuffles_weights_with_their_samples(backend):
    X, y = blobs(20)
    w = np.where(np.arange(20) % 2 == 0, 1.0, 0.0)
    model = mlp(backend)
    model.fit(X, y, epochs=1, batch_size=20, sample_weight=w, verbose=0)
    manual = mlp(backend)
    manual.train_step(X, y, sample_weight=w)  # one batch: the order cannot matter
    assert_same_weights(model, manual, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "w, match",
    [(np.ones(5), r"shape \(12,\)"), (-np.ones(12), ">= 0"), ([np.nan] * 12, "finite")],
)
def test_bad_sample_weights_are_named(w, match):
    X, y = blobs(12)
    model = mlp()
    before = model.get_weights()
    with pytest.raises(InvalidInputError, match=match):
        model.fit(X, y, sample_weight=w, verbose=0)
    assert_same_weights(model, before)


# ------------------------------------------------------------------ fused head
@pytest.mark.parametrize(
    "head, loss, logits_loss",
    [
        ("softmax", "categorical_crossentropy", "softmax_cross_entropy"),
        ("softmax", "sparse_categorical_crossentropy", "softmax_cross_entropy"),
        ("sigmoid", "binary_crossentropy", "binary_cross_entropy"),
    ],
)
def test_keras_style_head_trains_on_logits(backend, head, loss, logits_loss):
    X, y = blobs(30)
    if "binary" in loss:
        y = np.eye(3)[y]
    keras = mlp(backend, head=head, loss=loss)
    plain = mlp(backend, loss=logits_loss)
    hk = keras.fit(X, y, epochs=3, batch_size=8, verbose=0)
    hp = plain.fit(X, y, epochs=3, batch_size=8, verbose=0)
    assert hk.history == hp.history
    assert_same_weights(keras, plain)
    probabilities = keras.predict(X)
    logits = plain.predict(X)
    link = getattr(gpunn.get_backend("cpu"), head)
    np.testing.assert_allclose(probabilities, link(logits), rtol=1e-12, atol=1e-15)


def test_one_hot_labels_train_like_integer_labels(backend):
    X, y = blobs(30)
    onehot = mlp(backend, head="softmax", loss="categorical_crossentropy")
    labels = mlp(backend, head="softmax", loss="categorical_crossentropy")
    onehot.fit(X, np.eye(3)[y], epochs=2, batch_size=8, verbose=0)
    labels.fit(X, y, epochs=2, batch_size=8, verbose=0)
    assert_same_weights(onehot, labels, rtol=1e-12, atol=1e-14)


def test_final_activation_layer_and_temperature_are_fused(backend):
    X, y = blobs(30)
    model = gpunn.Sequential(
        [Dense(8, activation="tanh"), Dense(3), layers.Softmax(temperature=2.0)],
        input_dim=6,
        dtype="float64",
        backend=backend,
        seed=0,
    )
    model.compile("categorical_crossentropy", optim.SGD(0.1))
    reference = mlp(backend)
    reference.compile(losses.SoftmaxCrossEntropy(temperature=2.0), optim.SGD(0.1))
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    reference.fit(X, y, epochs=2, batch_size=8, verbose=0)
    assert_same_weights(model, reference, rtol=1e-12, atol=1e-14)


def test_a_non_matching_head_is_not_fused():
    """softmax + mse backpropagates through the softmax as written."""
    X, y = blobs(12)
    model = mlp(head="softmax", loss="mse")
    assert model._fused_head() is None
    assert gpunn.gradcheck(model, X, np.eye(3)[y])


# ------------------------------------------------------------------ penalties
def test_regularization_penalty_is_in_the_loss_and_its_gradient():
    X, y = blobs(12)
    model = gpunn.Sequential(
        [
            Dense(8, activation="tanh", kernel_regularizer=regularizers.L2(0.1)),
            Dense(3, kernel_regularizer="l1", bias_regularizer=regularizers.L2(0.5)),
        ],
        input_dim=6,
        dtype="float64",
        backend="cpu",
        seed=0,
    )
    model.compile("softmax_cross_entropy", "sgd")
    w1, _, w2, b2 = model.get_weights()
    data_loss = model.loss(model.backend, model.forward(X), y)[0]
    penalty = 0.1 * (w1**2).sum() + 0.01 * np.abs(w2).sum() + 0.5 * (b2**2).sum()
    assert model.evaluate(X, y)["loss"] == pytest.approx(data_loss + penalty, rel=1e-12)
    assert gpunn.gradcheck(model, X, y)


# ------------------------------------------------------------------ adapt and state
def test_model_adapt_feeds_each_layer_what_reaches_it(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4)) * [1, 10, 100, 0.1] + [5, -5, 0, 1]
    model = gpunn.Sequential(
        [layers.Standardize(), Dense(6), layers.Standardize(), Dense(2)],
        dtype="float64",
        backend=backend,
        seed=0,
    )
    model.adapt(X)
    first = model.layers[0].get_state()
    np.testing.assert_allclose(first["mean"], X.mean(0), rtol=1e-12)
    hidden = model.layers[1].forward(model.layers[0].forward(model.backend.asarray(X)))
    hidden = model.backend.to_numpy(hidden)
    np.testing.assert_allclose(model.layers[2].get_state()["mean"], hidden.mean(0))
    state = model.get_state()
    assert set(state) >= {"standardize_0.mean", "standardize_2.mean"}
    with pytest.raises(ValueError, match="no adaptable layer"):
        mlp().adapt(X[:, :6] if X.shape[1] >= 6 else np.ones((5, 6)))


def test_get_state_round_trips_batch_norm_statistics():
    X, y = blobs(40)
    model = gpunn.Sequential(
        [Dense(8), layers.BatchNorm(), layers.ReLU(), Dense(3)],
        input_dim=6,
        dtype="float64",
        backend="cpu",
        seed=0,
    )
    model.compile("softmax_cross_entropy", "adam")
    saved = model.get_state()
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    trained = model.get_state()
    assert not np.array_equal(
        saved["batchnorm_1.running_mean"], trained["batchnorm_1.running_mean"]
    )
    model.set_state(saved)
    for key, value in model.get_state().items():
        np.testing.assert_array_equal(value, saved[key])
    with pytest.raises(ValueError, match="entries"):
        model.set_state({})


# ------------------------------------------------------------------ lr_find
def test_lr_find_sweeps_and_restores_everything():
    X, y = blobs(64)
    model = make(seed=0, optimizer=optim.Adam(1e-3))
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    before = model.get_weights()
    moments = model.optimizer.state["exp_avg"].copy()
    steps, lr, rng_state = (
        model.optimizer.steps,
        model.optimizer.lr,
        model.rng.bit_generator.state,
    )
    result = model.lr_find(X, y, start=1e-5, end=100.0, steps=60, batch_size=16)
    assert 3 <= len(result.lrs) <= 60
    np.testing.assert_allclose(result.lrs[:3], 1e-5 * (1e7 ** (np.arange(3) / 59)))
    assert result.losses.shape == result.smoothed.shape == result.lrs.shape
    assert result.suggested_lr is not None and 1e-5 <= result.suggested_lr <= 100
    assert result.smoothed[-1] > result.smoothed.min()  # it ran into divergence
    assert_same_weights(model, before)
    np.testing.assert_array_equal(model.optimizer.state["exp_avg"], moments)
    assert (model.optimizer.steps, model.optimizer.lr) == (steps, lr)
    assert model.rng.bit_generator.state == rng_state


def test_lr_find_validates_its_arguments():
    X, y = blobs(16)
    model = make()
    with pytest.raises(ValueError, match="end"):
        model.lr_find(X, y, start=1.0, end=0.1)
    with pytest.raises(ValueError, match="steps"):
        model.lr_find(X, y, steps=1)


def test_lr_find_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    X, y = blobs(64)
    path = tmp_path / "lr.png"
    result = make(seed=0).lr_find(X, y, steps=30, batch_size=16, plot=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.plot().get_xscale() == "log"


def test_lr_find_without_matplotlib_says_how_to_get_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("blocked")
        return real_import(name, *args, **kwargs)

    X, y = blobs(64)
    result = make(seed=0).lr_find(X, y, steps=10, batch_size=16)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"gpunn\[plot\]"):
        result.plot("x.png")


def test_lr_find_suggests_the_steepest_descent_before_the_minimum():
    from gpunn.lr_find import _suggest

    lrs = np.logspace(-5, 1, 61)
    decades = np.log10(lrs)
    loss = 2 - np.tanh(2 * (decades + 2)) + np.where(decades > 0, 5 * decades, 0)
    loss[:3] = [4.0, 3.5, 2.5]  # a noisy start is ignored
    assert _suggest(lrs, loss) == pytest.approx(1e-2)
    assert _suggest(lrs[:2], loss[:2]) is None  # too few points


def test_lr_find_restores_dropout_streams():
    """Fitting after lr_find gives bitwise what fitting without it gives."""
    X, y = blobs(64)

    def model():
        m = gpunn.Sequential(
            [
                Dense(16, activation="relu"),
                layers.Dropout(0.5),
                layers.GaussianNoise(0.1),
                Dense(3),
            ],
            input_dim=6,
            dtype="float64",
            backend="cpu",
            seed=4,
        )
        m.compile("softmax_cross_entropy", optim.Adam(1e-2))
        return m

    plain, probed = model(), model()
    probed.lr_find(X, y, steps=20, batch_size=16)
    plain.fit(X, y, epochs=2, batch_size=16, verbose=0)
    probed.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert_same_weights(plain, probed)


def test_a_batch_norm_model_refuses_a_last_batch_of_one_before_training():
    X, y = blobs(33)
    model = gpunn.Sequential(
        [Dense(8), layers.BatchNorm(), layers.ReLU(), Dense(3)],
        input_dim=6,
        dtype="float64",
        backend="cpu",
        seed=0,
    )
    model.compile("softmax_cross_entropy", "adam")
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"batch_size=32 with 33 training samples"):
        model.fit(X, y, batch_size=32, verbose=0)
    with pytest.raises(ValueError, match=r"batchnorm_1 \(BatchNorm\) needs at least 2"):
        model.lr_find(X, y, batch_size=16)
    assert model.optimizer.steps == 0
    assert_same_weights(model, before)
    model.fit(X, y, batch_size=11, verbose=0)  # 3 batches of 11 train


def test_set_state_is_all_or_nothing_and_names_the_layer():
    X, y = blobs(40)
    model = gpunn.Sequential(
        [Dense(4), layers.BatchNorm(), Dense(4), layers.BatchNorm(), Dense(3)],
        input_dim=6,
        dtype="float64",
        backend="cpu",
        seed=0,
    )
    model.compile("softmax_cross_entropy", "adam")
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    good = model.get_state()
    bad = {k: np.full_like(v, 5.0) for k, v in good.items()}
    bad["batchnorm_3.running_var"] = -np.ones(4)
    with pytest.raises(ValueError, match="state of layer batchnorm_3"):
        model.set_state(bad)
    for key, value in model.get_state().items():
        np.testing.assert_array_equal(value, good[key])
