"""Sequential: building, compile, train_step, predict/evaluate, weights, summary, and
the bad-input contract at the API boundary."""

import numpy as np
import pytest

import gpunn
from gpunn.errors import InvalidInputError, LabelError, NotBuiltError
from gpunn.layers import Dense, ReLU


def make(
    backend="cpu",
    dtype="float32",
    seed=0,
    input_dim=6,
    loss="softmax_cross_entropy",
    optimizer=None,
    **kwargs,
):
    model = gpunn.Sequential(
        [Dense(16, activation="relu"), Dense(3)],
        input_dim=input_dim,
        dtype=dtype,
        backend=backend,
        seed=seed,
    )
    model.compile(loss, optimizer or gpunn.optim.Adam(1e-2), **kwargs)
    return model


def blobs(n=60, d=6, seed=0):
    """Three separable clusters."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.standard_normal((n, d)) * 0.5 + np.eye(3, d)[y] * 3
    return X, y


def test_train_step_returns_the_loss_before_the_update(backend):
    model = make(backend)
    X, y = blobs()
    before = model.evaluate(X, y)["loss"]
    first = model.train_step(X, y)
    assert isinstance(first, float)
    assert first == pytest.approx(before, rel=1e-6)
    second = model.train_step(X, y)
    assert second < first
    assert model.optimizer.steps == 2


def test_model_builds_lazily_from_the_data():
    model = gpunn.Sequential(
        [Dense(4, activation="tanh"), Dense(2)], backend="cpu", seed=0
    )
    assert not model.built
    with pytest.raises(NotBuiltError, match="not built"):
        model.get_weights()
    model.compile("softmax_cross_entropy", "adam")
    model.fit(np.ones((5, 7)), np.array([0, 1, 0, 1, 1]), epochs=1, verbose=0)
    assert model.built and model.input_dim == 7
    assert [w.shape for w in model.get_weights()] == [(7, 4), (4,), (4, 2), (2,)]
    assert model.optimizer.arena is model.arena


def test_compile_after_build_binds_the_optimizer():
    model = gpunn.Sequential([Dense(2)], input_dim=3, backend="cpu", seed=0)
    opt = gpunn.optim.SGD(lr=0.1, momentum=0.9)
    model.compile("mse", opt)
    assert opt.arena is model.arena and "momentum_buffer" in opt.state
    assert model.metrics == []  # the default "accuracy" is dropped for mse


def test_predict_is_the_raw_output_and_independent_of_batching(backend, dtype):
    model = make(backend, dtype)
    X, _ = blobs(25)
    out = model.predict(X)
    assert isinstance(out, np.ndarray) and out.shape == (25, 3) and out.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    # BLAS may round a 1-row GEMM differently: equal within rounding, not bitwise
    np.testing.assert_allclose(
        model.predict(X, batch_size=4), out, rtol=rtol, atol=rtol
    )
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    ref = np.maximum(X @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=rtol)


def test_evaluate_matches_predict(backend):
    model = make(backend)
    X, y = blobs(31)
    model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    result = model.evaluate(X, y, batch_size=7)
    assert set(result) == {"loss", "accuracy"}
    logits = model.predict(X).astype(np.float64)
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    assert result["loss"] == pytest.approx(
        np.mean(lse - logits[np.arange(31), y]), rel=1e-5
    )


@pytest.mark.parametrize(
    "loss, y, metrics, keys",
    [
        (
            "binary_cross_entropy",
            lambda X: (X[:, :3] > 0).astype(float),
            ("accuracy",),
            {"loss", "accuracy"},
        ),
        ("mse", lambda X: X[:, :3] * 2 - 1, ("mae", "mse"), {"loss", "mae", "mse"}),
    ],
)
def test_other_losses_train(backend, loss, y, metrics, keys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6))
    model = make(backend, loss=loss, metrics=metrics)
    history = model.fit(X, y(X), epochs=30, batch_size=16, verbose=0)
    assert set(history.history) == keys
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_float64_end_to_end(backend):
    model = make(backend, "float64")
    X, y = blobs()
    history = model.fit(X, y, epochs=20, batch_size=16, verbose=0)
    assert model.arena.params.dtype == np.float64
    assert model.predict(X).dtype == np.float64
    assert history.history["accuracy"][-1] == 1.0


def test_summary_counts_params_and_flops(capsys):
    model = gpunn.Sequential(
        [Dense(16, activation="relu"), ReLU(), Dense(3)],
        input_dim=6,
        backend="cpu",
        seed=0,
    )
    text = model.summary()
    assert capsys.readouterr().out.strip() == text.strip()
    assert "dense_0 (Dense)" in text and "relu_1 (ReLU)" in text
    assert f"{6 * 16 + 16:,}" in text and f"{16 * 3 + 3:,}" in text
    assert f"Total params: {6 * 16 + 16 + 16 * 3 + 3:,}" in text
    forward = (2 * 6 * 16 + 16 + 16) + 16 + (2 * 16 * 3 + 3)
    assert f"Forward FLOPs/sample: {forward:,}" in text
    assert "Not built" in gpunn.Sequential([Dense(2)], backend="cpu").summary(
        print_fn=len
    )


def test_set_weights_validates_everything_first():
    model = make()
    before = model.get_weights()
    good = [np.ones_like(w) for w in before]
    for bad, message in [
        (good[:-1], "list of 4 arrays, got 3"),
        (good[:1] + [np.ones(5)] + good[2:], r"dense_0.bias must have shape \(16,\)"),
        (good[:3] + [np.array([1.0, np.nan, 0])], "contains NaN"),
        (good[:3] + [np.array(["a", "b", "c"])], "real numbers"),
    ]:
        with pytest.raises((ValueError, TypeError), match=message):
            model.set_weights(bad)
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"dtype": "float16"}, ValueError, "dtype must be one of"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0, got -1"),
        ({"input_dim": 0}, ValueError, "input_dim must be an int >= 1, got 0"),
        ({"layers": [np.ones(3)]}, TypeError, "layers must be gpunn Layers"),
        ({"layers": []}, ValueError, "at least one layer"),
        ({"layers": [Dense(2, name="a"), Dense(2, name="a")]}, ValueError, "unique"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    args = {"layers": [Dense(2)], "input_dim": 3, "backend": "cpu", **kwargs}
    with pytest.raises(error, match=message):
        gpunn.Sequential(**args)


def test_dense_validates_units():
    for units in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="units must be a positive int"):
            Dense(units)
    with pytest.raises(ValueError, match="activation must be one of"):
        Dense(3, activation="swishy")


def test_compile_validation():
    model = gpunn.Sequential([Dense(2)], input_dim=3, backend="cpu")
    with pytest.raises(ValueError, match="loss must be one of"):
        model.compile("hinge")
    with pytest.raises(ValueError, match="needs a classification loss"):
        model.compile("mse", metrics=("accuracy",))
    with pytest.raises(ValueError, match="metrics must name"):
        model.compile("softmax_cross_entropy", metrics=("f2",))
    with pytest.raises(NotBuiltError, match="compile"):
        model.train_step(np.ones((2, 3)), np.zeros(2))


BAD_INPUTS = [
    (lambda X, y: (X[0], y), InvalidInputError, r"X must be 2-D .* got shape \(6,\)"),
    (
        lambda X, y: (X[:, :4], y),
        InvalidInputError,
        "X has 4 features per sample, but the model expects 6",
    ),
    (
        lambda X, y: (X, y[:-1]),
        InvalidInputError,
        r"one entry per sample of X \(60\), got 59",
    ),
    (lambda X, y: (X[:0], y[:0]), InvalidInputError, "at least 1 sample"),
    (
        lambda X, y: (np.where(np.arange(6) == 2, np.nan, X), y),
        InvalidInputError,
        "Input X contains NaN.",
    ),
    (
        lambda X, y: (np.where(np.arange(6) == 2, np.inf, X), y),
        InvalidInputError,
        "Input X contains infinity",
    ),
    (lambda X, y: (X * 1e300, y), InvalidInputError, "too large for float32"),
    (lambda X, y: (X.astype(str), y), TypeError, "X must hold real numbers"),
    (lambda X, y: (X.astype(complex), y), TypeError, "got dtype complex128"),
    (
        lambda X, y: (X, np.where(np.arange(60) == 7, 3, y)),
        LabelError,
        r"labels in \[0, 3\) .* got 3 at index 7",
    ),
    (
        lambda X, y: (X, np.where(np.arange(60) == 5, -1, y)),
        LabelError,
        "got -1 at index 5",
    ),
    (lambda X, y: (X, y + 0.5), LabelError, "integer class labels, got 0.5 at index 0"),
    (
        lambda X, y: (X, np.where(np.arange(60) == 4, np.nan, y)),
        LabelError,
        "got nan at index 4",
    ),
    (lambda X, y: (X, y.reshape(-1, 1)), InvalidInputError, r"shape \(n,\)"),
]


@pytest.mark.parametrize("bad, error, message", BAD_INPUTS)
def test_bad_input_raises_and_changes_nothing(backend, bad, error, message):
    model = make(backend)
    X, y = blobs()
    before = model.get_weights()
    for call in (
        lambda X, y: model.fit(X, y, verbose=0),
        model.train_step,
        model.evaluate,
    ):
        with pytest.raises(error, match="(?i)" + message):  # train_step names it x
            call(*bad(X, y))
    assert model.optimizer.steps == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_float_labels_that_are_integers_are_accepted():
    model = make()
    X, y = blobs()
    assert np.isfinite(model.train_step(X, y.astype(np.float64)))


def test_caller_arrays_are_never_modified(backend):
    X, y = blobs()
    X64, y64 = X.copy(), y.copy()
    X32 = X.astype(np.float32)
    for arr in (X, y, X32):
        arr.setflags(write=False)
    model = make(backend)
    model.fit(X, y, epochs=2, batch_size=7, validation_data=(X32, y), verbose=0)
    model.train_step(X32, y)
    model.evaluate(X32, y)
    model.predict(X32)
    np.testing.assert_array_equal(X, X64)
    np.testing.assert_array_equal(y, y64)
    np.testing.assert_array_equal(X32, X64.astype(np.float32))


def test_gpu_array_to_cpu_model_is_a_type_error_with_the_fix():
    class FakeGpuArray:
        __cuda_array_interface__ = None  # only its presence matters
        dtype = np.dtype(np.float32)
        ndim, shape = 2, (2, 6)

    model = make()
    with pytest.raises(
        TypeError,
        match=r"pass x.get\(\) or build the model with "
        "backend='gpu'",
    ):
        model.predict(FakeGpuArray())


def test_numpy_typed_arguments_are_accepted():
    model = gpunn.Sequential(
        [Dense(2)],
        input_dim=np.int64(3),
        dtype=np.float32,
        backend="cpu",
        seed=np.int64(4),
    )
    assert model.dtype == np.float32 and model.input_dim == 3 and model.seed == 4
    assert gpunn.Sequential([Dense(2)], dtype="f8", backend="cpu").dtype == np.float64
    assert gpunn.optim.Adam(lr=np.float32(0.5)).lr == 0.5
    model.compile("softmax_cross_entropy", metrics="accuracy")  # a bare string
    assert [m.name for m in model.metrics] == ["accuracy"]


def test_one_optimizer_per_model_and_recompile_keeps_its_state():
    X, y = blobs()
    opt = gpunn.optim.Adam(1e-2)
    first = make(optimizer=opt)
    first.fit(X, y, epochs=1, verbose=0)
    moments = first.backend.to_numpy(opt.state["exp_avg"]).copy()
    first.compile("softmax_cross_entropy", opt)  # same model: state kept
    assert opt.steps > 0
    np.testing.assert_array_equal(first.backend.to_numpy(opt.state["exp_avg"]), moments)
    second = gpunn.Sequential([Dense(3)], input_dim=6, backend="cpu", seed=0)
    second.compile("mse", "sgd")
    with pytest.raises(ValueError, match="already belongs to another model"):
        second.compile("softmax_cross_entropy", opt)
    assert second.loss.name == "mse" and isinstance(second.optimizer, gpunn.optim.SGD)


def test_a_failed_update_does_not_count_as_a_step():
    model = make()
    X, y = blobs()
    model.train_step(X, y)
    model.optimizer.state["exp_avg"] = model.optimizer.state["exp_avg"][:-1]  # corrupt
    with pytest.raises(ValueError, match="exp_avg must be a contiguous 1-D array"):
        model.train_step(X, y)
    assert model.optimizer.steps == 1


@pytest.mark.parametrize(
    "front",
    [
        lambda: [gpunn.layers.Standardize()],
        lambda: [gpunn.layers.Tanh(), gpunn.layers.ReLU()],
        lambda: [gpunn.layers.Tanh(), gpunn.layers.Dropout(0.3)],
        lambda: [gpunn.layers.GaussianNoise(0.1), gpunn.layers.ReLU()],
    ],
)
def test_layers_below_the_first_parameters_get_no_gradient_pass(backend, front):
    X, y = blobs()
    layers = [*front(), Dense(5, activation="tanh"), Dense(3)]
    model = gpunn.Sequential(layers, 6, "float64", backend, seed=0)
    model.compile("softmax_cross_entropy", gpunn.optim.SGD(lr=0.1))
    if isinstance(model.layers[0], gpunn.layers.Standardize):
        model.adapt(X)
    assert [layer.needs_dx for layer in model.layers][-3:] == [False, False, True]
    noisy = any(getattr(layer, "generator", None) for layer in model.layers)
    if not noisy:  # gradcheck trains in training mode: noise would change the loss
        assert gpunn.gradcheck(model, X[:8], y[:8])  # every gradient still right
    before = model.get_weights()
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert all((a != b).any() for a, b in zip(before, model.get_weights()))
