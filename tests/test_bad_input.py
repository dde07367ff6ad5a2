"""Bad input (the README's "What is guaranteed") not covered elsewhere: read-only arrays
are accepted and never changed by any entry point; bad sample weights, validation
data and prediction inputs raise the same class on every backend, naming the
argument, with nothing changed. (X / y rows: test_model.py; hyperparameters:
test_optim*.py, test_losses.py, test_activation_layers.py; sample-weight messages on
the CPU: test_fit_toolkit.py.)"""

import numpy as np
import pytest

import gpunn
from gpunn import optim
from gpunn.errors import InvalidInputError, LabelError
from gpunn.layers import Dense

N = 24


def make(backend, dtype="float32", loss="softmax_cross_entropy"):
    model = gpunn.Sequential(
        [Dense(8, activation="tanh"), Dense(3)],
        input_dim=5,
        dtype=dtype,
        backend=backend,
        seed=0,
    )
    model.compile(loss, optim.Adam(1e-2))
    return model


def frozen(*arrays):
    """Read-only copies of ``arrays`` and pristine copies to compare with."""
    out = []
    for a in arrays:
        a = np.array(a)
        a.setflags(write=False)
        out.append(a)
    return out, [a.copy() for a in out]


def blobs(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % 3
    return (rng.standard_normal((N, 5)) + np.eye(3, 5)[y] * 2).astype(dtype), y


def snapshot(model):
    host = model.backend.to_numpy
    state = [host(buf).copy() for buf in model.optimizer.state.values()]
    return [host(model.arena.params).copy(), *state], model.optimizer.steps


def assert_unchanged(model, before):
    arrays, steps = snapshot(model)
    assert steps == before[1]
    for a, b in zip(arrays, before[0]):
        np.testing.assert_array_equal(a, b)


def test_read_only_inputs_are_accepted_and_never_changed(backend, dtype):
    X, y = blobs(dtype)  # in the model's dtype: the CPU uses the array as it is
    w = np.linspace(0.0, 2.0, N)
    (X, Xf, y, onehot, w, w32), pristine = frozen(
        X, np.asfortranarray(X), y, np.eye(3)[y], w, w.astype(np.float32)
    )
    model = make(backend, dtype)
    model.fit(
        X,
        y,
        epochs=2,
        batch_size=5,
        sample_weight=w,
        accumulate_steps=2,
        validation_data=(Xf, onehot, w32),
        verbose=0,
    )
    model.fit(
        Xf,
        onehot,
        batch_size=7,
        validation_split=0.25,
        sample_weight=w32,
        shuffle=False,
        verbose=0,
    )
    model.train_step(X[:6], y[:6], w[:6])
    model.evaluate(Xf, onehot, batch_size=5, sample_weight=w)
    model.lr_find(X, y, steps=5, batch_size=4, sample_weight=w)
    row = np.broadcast_to(X[:1], (4, 5))  # read-only, zero strides
    assert model.predict(row).shape == (4, 3) and model.predict(Xf).shape == (N, 3)
    for a, b in zip((X, Xf, y, onehot, w, w32), pristine):
        assert not a.flags.writeable
        np.testing.assert_array_equal(a, b)


BAD_WEIGHTS = [
    (np.ones(5), InvalidInputError, r"sample_weight must have shape \(24,\)"),
    (np.ones((N, 2)), InvalidInputError, r"got shape \(24, 2\)"),
    (
        np.where(np.arange(N) == 3, -1.0, 1.0),
        InvalidInputError,
        r"got -1\.0 at index 3",
    ),
    (
        np.where(np.arange(N) == 4, np.nan, 1.0),
        InvalidInputError,
        r"got nan at index 4",
    ),
    (
        np.where(np.arange(N) == 5, np.inf, 1.0),
        InvalidInputError,
        r"got inf at index 5",
    ),
    (np.array(["1"] * N), TypeError, "sample_weight must hold real numbers"),
    (np.ones(N, complex), TypeError, "got dtype complex128"),
]


@pytest.mark.parametrize("w, error, message", BAD_WEIGHTS)
def test_bad_sample_weights_raise_the_same_class_on_every_backend(
    backend, w, error, message
):
    model = make(backend)
    X, y = blobs()
    before = snapshot(model)
    calls = [
        lambda: model.fit(X, y, sample_weight=w, verbose=0),
        lambda: model.train_step(X, y, w),
        lambda: model.evaluate(X, y, sample_weight=w),
        lambda: model.lr_find(X, y, steps=3, sample_weight=w),
    ]
    for call in calls:
        with pytest.raises(error, match=message):
            call()
    assert_unchanged(model, before)


def test_bad_validation_data_is_named_before_any_update(backend):
    model = make(backend)
    X, y = blobs()
    before = snapshot(model)
    bad = [
        ((X[:, :3], y), InvalidInputError, r"validation_data\[0\] has 3 features"),
        (
            (X, y + 1),
            LabelError,
            r"validation_data\[1\] must hold labels in \[0, 3\) .* got 3 at index 2",
        ),
        ((X, y, -np.ones(N)), InvalidInputError, r"validation_data\[2\] must be"),
        (
            (X, y[:-1]),
            InvalidInputError,
            r"validation_data\[1\] must have one entry per sample of X \(24\)",
        ),
        ((X,), ValueError, r"validation_data must be \(X_val, y_val\)"),
    ]
    for validation_data, error, message in bad:
        with pytest.raises(error, match=message):
            model.fit(X, y, validation_data=validation_data, verbose=0)
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "X, error, message",
    [
        (np.full((2, 5), np.nan), InvalidInputError, "Input X contains NaN."),
        (np.full((2, 5), -np.inf), InvalidInputError, "Input X contains infinity"),
        (np.ones((2, 4)), InvalidInputError, "X has 4 features per sample"),
        (np.ones(5), InvalidInputError, r"X must be 2-D .* got shape \(5,\)"),
        (np.ones((0, 5)), InvalidInputError, "at least 1 sample"),
        (np.full((2, 5), "a"), TypeError, "X must hold real numbers"),
    ],
)
def test_bad_prediction_input_raises_the_same_class_on_every_backend(
    backend, X, error, message
):
    model = make(backend)
    with pytest.raises(error, match=message):
        model.predict(X)


def test_bad_labels_in_lr_find_and_regression_targets(backend):
    model = make(backend)
    X, y = blobs()
    before = snapshot(model)
    with pytest.raises(LabelError, match="got 7 at index 0"):
        model.lr_find(X, np.where(np.arange(N) == 0, 7, y), steps=3)
    regression = make(backend, loss="mse")
    targets = np.where(np.arange(N * 3).reshape(N, 3) == 4, np.nan, 0.0)
    with pytest.raises(InvalidInputError, match="contains NaN"):
        regression.fit(X, targets, verbose=0)
    assert_unchanged(model, before)
    assert regression.optimizer.steps == 0


# ------------------------------------------------------------------ after the cast
def too_large_cases():
    """(loss, y, sample_weight, the argument the error names): each value finite in
    float64 and infinite in float32."""
    _, y = blobs()
    big = np.ones(N)
    big[7] = 1e39
    return {
        "sample_weight": ("softmax_cross_entropy", y, big, "sample_weight"),
        "regression y": ("mse", np.c_[big, big, big], None, "Input y"),
        "class_weight": (
            gpunn.losses.SoftmaxCrossEntropy(class_weight=[1.0, 1e39, 1.0]),
            y,
            None,
            "class_weight of the loss",
        ),
        "pos_weight": (
            gpunn.losses.get({"name": "binary_cross_entropy", "pos_weight": 1e39}),
            np.eye(3)[y],
            None,
            "pos_weight of the loss",
        ),
    }


CALLS = {
    "fit": lambda m, X, y, w: m.fit(X, y, sample_weight=w, verbose=0),
    "evaluate": lambda m, X, y, w: m.evaluate(X, y, sample_weight=w),
    "train_step": lambda m, X, y, w: m.train_step(X, y, w),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("case", sorted(too_large_cases()))
def test_values_overflowing_the_model_dtype_are_refused_before_any_step(
    backend, case, call
):
    loss, y, w, named = too_large_cases()[case]
    model = make(backend, loss=loss)
    before = snapshot(model)
    X, _ = blobs()
    with np.errstate(all="raise"), pytest.raises(InvalidInputError, match=named):
        CALLS[call](model, X, y, w)
    assert_unchanged(model, before)
    make(backend, "float64", loss).train_step(X, y, w)  # fine in float64


# ------------------------------------------------------------------ gpunn errors
def _fresh():
    return make("cpu")


def _unbuilt():
    model = gpunn.Sequential([Dense(3)], seed=0)
    model.compile("softmax_cross_entropy", "adam")
    return model


# (call, pattern naming the argument and the value or type got)
ARGUMENT_ERRORS = {
    "Sequential(5)": (lambda: gpunn.Sequential(5), "layers must be a list.*int"),
    "Sequential(Dense)": (
        lambda: gpunn.Sequential(Dense(3)),
        "layers must be a list.*Dense",
    ),
    "dtype=None": (
        lambda: gpunn.Sequential([Dense(3)], dtype=None),
        "dtype must be one of.*None",
    ),
    "tf32='yes'": (
        lambda: gpunn.Sequential([Dense(3)], tf32="yes"),
        "tf32 must be True or False, got 'yes'",
    ),
    "compile metrics=5": (
        lambda: _fresh().compile("softmax_cross_entropy", "adam", 5),
        "metrics must be a list.*int",
    ),
    "ragged X": (
        lambda: _unbuilt().fit([[1.0, 2.0], [3.0]], [0, 1], verbose=0),
        "X must be an array of numbers.*list",
    ),
    "ragged y": (
        lambda: _unbuilt().fit(np.ones((2, 2)), [[0], [1, 2]], verbose=0),
        "y must be an array of numbers.*list",
    ),
    "ragged validation X": (
        lambda: _fresh().fit(
            *blobs(), validation_data=([[1.0], [1.0, 2.0]], [0, 1]), verbose=0
        ),
        r"validation_data\[0\] must be an array of numbers",
    ),
    "shuffle='no'": (
        lambda: _fresh().fit(*blobs(), shuffle="no", verbose=0),
        "shuffle must be True or False, got 'no'",
    ),
    "verbose=True": (
        lambda: _fresh().fit(*blobs(), verbose=True),
        "verbose must be 0, 1 or 2, got True",
    ),
    "resume_from=123": (
        lambda: _fresh().fit(*blobs(), resume_from=123, verbose=0),
        "resume_from must be a file path.*123.*int",
    ),
    "set_weights(5)": (
        lambda: _fresh().set_weights(5),
        "weights must be a list of 4 arrays, got int",
    ),
    "set_weights(strings)": (
        lambda: _fresh().set_weights(["a"] * 4),
        r"weights for dense_0.kernel must hold real numbers.*got dtype <U1",
    ),
    "set_state(5)": (lambda: _fresh().set_state(5), "state must be a dict.*int"),
    "save(5)": (lambda: _fresh().save(5), "path must be a file path.*int"),
    "summary(print_fn=5)": (
        lambda: _fresh().summary(5),
        "print_fn must be callable, got 5",
    ),
    "X strings": (
        lambda: _fresh().predict(np.full((2, 5), "a")),
        "X must hold real numbers.*<U1",
    ),
    "use_bias='no'": (
        lambda: Dense(3, use_bias="no"),
        "use_bias must be True or False, got 'no'",
    ),
    "amsgrad='yes'": (
        lambda: optim.Adam(amsgrad="yes"),
        "amsgrad must be True or False, got 'yes'",
    ),
    "lr='a'": (lambda: optim.Adam("a"), "lr must be a real number, got str"),
    "epochs='2'": (
        lambda: _fresh().fit(*blobs(), epochs="2", verbose=0),
        "epochs must be an int >= 1, got '2'",
    ),
    "schedule total_steps=0": (
        lambda: gpunn.schedules.get("cosine", lr=0.1, total_steps=0),
        "total_steps must be an int >= 1, got 0",
    ),
    "loss name": (lambda: _fresh().compile("nope"), "loss must be one of.*'nope'"),
    "activation": (
        lambda: Dense(3, activation=5),
        "activation must be a name.*int",
    ),
    "backend": (lambda: gpunn.Sequential([Dense(3)], backend="tpu"), "'tpu'"),
    "test_size='a'": (
        lambda: gpunn.datasets.train_test_split(*blobs(), "a"),
        "test_size must be a real number, got str",
    ),
    "kernel_init returns the wrong size": (
        lambda: gpunn.Sequential(
            [Dense(3, kernel_init=lambda shape, rng: np.ones(2))], input_dim=2
        ),
        r"kernel_init callable must return real numbers of shape \(2, 3\), got shape",
    ),
    "kernel_init returns a string": (
        lambda: gpunn.Sequential(
            [Dense(3, kernel_init=lambda shape, rng: "a")], input_dim=2
        ),
        "kernel_init callable must return real numbers.*'a'",
    ),
    "lr_find plot=5": (
        lambda: _fresh().lr_find(*blobs(), steps=3, plot=5),
        "plot must be a file path.*int",
    ),
    "lr_find end < start": (
        lambda: _fresh().lr_find(*blobs(), start=1.0, end=0.1),
        r"end must be > start \(1\), got 0.1",
    ),
}


@pytest.mark.parametrize("case", sorted(ARGUMENT_ERRORS))
def test_every_input_error_is_a_gpunn_error_naming_the_argument(case):
    call, pattern = ARGUMENT_ERRORS[case]
    with pytest.raises(gpunn.GpunnError, match=pattern) as info:
        call()
    assert isinstance(info.value, (ValueError, TypeError))  # builtins still catch


def test_set_weights_still_takes_any_iterable_of_arrays():
    model = _fresh()
    weights = model.get_weights()
    model.set_weights(w * 2 for w in weights)
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b * 2)
