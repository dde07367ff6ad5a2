"""Whole models: ``model.save`` / ``gpunn.load`` round trips (every layer type, both
dtypes, every optimizer, the losses), what cannot be saved, files that do not fit
their architecture, and loading the weights with the ``safetensors`` package and
PyTorch."""

import json
import tracemalloc

import numpy as np
import pytest

import gpunn
from gpunn import losses, optim, schedules
from gpunn.errors import CheckpointError, NotBuiltError
from gpunn.layers import (
    ELU,
    GELU,
    Activation,
    BatchNorm,
    Dense,
    Dropout,
    GaussianNoise,
    Identity,
    Layer,
    LeakyReLU,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Standardize,
    Swish,
    Tanh,
    Whiten,
)
from gpunn.persistence import model_config, read_file, write_file
from gpunn.persistence.config import layer_classes


def every_layer_model(dtype, backend="cpu"):
    layers = [
        Standardize(),
        Whiten(method="zca"),
        Whiten(method="pca", n_components=6),
        Dense(16, activation="gelu", kernel_regularizer="l2", bias_init="ones"),
        BatchNorm(momentum=0.2),
        ReLU(),
        Dropout(0.1),
        GaussianNoise(0.05),
        Dense(12, activation={"activation": "leaky_relu", "negative_slope": 0.2}),
        PReLU(per_unit=True),
        Swish(beta=1.5, trainable=True),
        LeakyReLU(0.1),
        ELU(0.5),
        SiLU(),
        GELU(approximate="tanh"),
        Sigmoid(),
        Tanh(),
        Identity(),
        Activation("elu", alpha=0.3),
        BatchNorm(affine=False, momentum=None),
        Dense(3, use_bias=False, kernel_init="he_normal"),
        Softmax(temperature=2.0),
    ]
    return gpunn.Sequential(layers, dtype=dtype, backend=backend, seed=3)


def data(n=48, width=8, classes=3):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, width)) * [1, 2, 3, 4, 5, 6, 7, 8][:width]
    return X, rng.integers(0, classes, n)


def assert_models_equal(loaded, model, X):
    assert model_config(loaded) == model_config(model)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)
    state, expected = loaded.get_state(), model.get_state()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert np.array_equal(state[key], value), key
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_round_trip_every_layer_type_is_bitwise(tmp_path, dtype):
    X, y = data()
    model = every_layer_model(dtype)
    model.adapt(X)
    schedule = schedules.Warmup(schedules.CosineDecay(0.01, 100), warmup_steps=5)
    model.compile(
        losses.get("softmax_cross_entropy", label_smoothing=0.1),
        optim.AdamW(schedule, betas=(0.8, 0.99), clip_norm=1.0),
        metrics=["accuracy", gpunn.metrics.TopKAccuracy(k=2)],
    )
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = gpunn.load(path)
    assert {type(layer).__name__ for layer in loaded.layers} == set(layer_classes())
    assert_models_equal(loaded, model, X)
    assert loaded.dtype == dtype and loaded.seed == model.seed
    assert loaded.optimizer.hyperparameters() == model.optimizer.hyperparameters()
    assert loaded.optimizer.steps == 0  # a fresh optimizer: state is in checkpoints
    assert loaded.loss.get_config() == model.loss.get_config()
    assert [repr(m) for m in loaded.metrics] == ["Accuracy()", "TopKAccuracy(k=2)"]
    before = loaded.get_weights()
    loaded.fit(X, y, epochs=1, batch_size=16, verbose=0)  # it trains on
    assert not np.array_equal(loaded.get_weights()[3], before[3])


def test_each_layer_rebuilds_from_its_config():
    model = every_layer_model("float64")
    model.build(8)
    for layer in model.layers:
        config = json.loads(json.dumps(layer.get_config()))
        rebuilt = type(layer)(**config)
        assert rebuilt.get_config() == layer.get_config(), type(layer).__name__


def test_file_names_follow_the_documented_keys(tmp_path):
    X, _ = data()
    model = gpunn.Sequential([Standardize(), Dense(4), BatchNorm()], input_dim=8)
    model.adapt(X)
    model.save(tmp_path / "m.safetensors")
    tensors, metadata = read_file(tmp_path / "m.safetensors")
    shapes = {key: value.shape for key, value in tensors.items()}
    assert shapes == {
        "standardize_0.mean": (8,),
        "standardize_0.scale": (8,),
        "dense_1.kernel": (8, 4),  # as get_weights: (n_in, units)
        "dense_1.bias": (4,),
        "batchnorm_2.gamma": (4,),
        "batchnorm_2.beta": (4,),
        "batchnorm_2.running_mean": (4,),
        "batchnorm_2.running_var": (4,),
        "batchnorm_2.num_batches_tracked": (),
    }
    assert np.array_equal(tensors["dense_1.kernel"], model.get_weights()[0])
    assert metadata["gpunn.format"] == "model"
    saved = json.loads(metadata["gpunn.model"])
    assert saved["config"] == model_config(model)


@pytest.mark.parametrize("name", optim.names())
def test_every_optimizer_round_trips(tmp_path, name):
    lr = schedules.ExponentialDecay(0.05, 0.9) if name != "sgd" else 0.1
    model = gpunn.Sequential([Dense(3)], input_dim=4, dtype="float64", seed=1)
    model.compile("mse", optim.get(name, lr=lr, clip_value=0.5))
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load(tmp_path / "m.safetensors")
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.hyperparameters() == model.optimizer.hyperparameters()


@pytest.mark.parametrize(
    "loss, width",
    [
        (losses.SoftmaxCrossEntropy(class_weight=[1.0, 2.0, 0.5], temperature=2), 3),
        (losses.BinaryCrossEntropy(pos_weight=2.0, label_smoothing=0.1), 2),
        (losses.get("huber", delta=2.0), 2),
        (losses.get("gaussian_nll", full=True), 4),
        (losses.mdn(2), 6),
        ("mae", 1),
    ],
)
def test_losses_round_trip(tmp_path, loss, width):
    model = gpunn.Sequential([Dense(width)], input_dim=4, seed=1)
    model.compile(loss, "sgd")
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load(tmp_path / "m.safetensors")
    assert loaded.loss.get_config() == model.loss.get_config()
    assert [repr(m) for m in loaded.metrics] == [repr(m) for m in model.metrics]


def test_save_and_load_on_the_backend(tmp_path, backend):
    X, y = data()
    model = gpunn.Sequential(
        [Dense(8, activation="relu"), BatchNorm(), Dense(3)], backend=backend, seed=0
    )
    model.compile("softmax_cross_entropy", "adam")
    model.fit(X, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.safetensors")
    assert_models_equal(gpunn.load(tmp_path / "m.safetensors", backend), model, X)
    on_cpu = gpunn.load(tmp_path / "m.safetensors", backend="cpu")
    for a, b in zip(on_cpu.get_weights(), model.get_weights(), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("how", ["uncompiled", "include_optimizer", "compile"])
def test_models_can_load_uncompiled(tmp_path, how):
    model = gpunn.Sequential([Dense(2)], input_dim=3)
    if how != "uncompiled":
        model.compile("mse", "adam")
    model.save(tmp_path / "m.safetensors", include_optimizer=how != "include_optimizer")
    loaded = gpunn.load(tmp_path / "m.safetensors", compile=how != "compile")
    assert loaded.loss is None and loaded.optimizer is None
    assert np.array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_a_callable_initializer_is_not_saved_but_the_weights_are(tmp_path):
    model = gpunn.Sequential(
        [Dense(3, kernel_init=lambda shape, rng: np.full(shape, 0.5))], input_dim=2
    )
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load(tmp_path / "m.safetensors")
    assert loaded.layers[0].get_config()["kernel_init"] == "glorot_uniform"
    assert np.array_equal(loaded.get_weights()[0], np.full((2, 3), 0.5, np.float32))


class Custom(Layer):
    def forward(self, x, training=False):
        return x


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: gpunn.Sequential([Custom()], input_dim=2), "only the classes"),
        (
            lambda: _compiled(optim.SGD(lambda step: 0.1)),
            "plain callable.*include_optimizer=False",
        ),
    ],
)
def test_what_load_could_not_rebuild_is_not_saved(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        make().save(tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def _compiled(optimizer):
    model = gpunn.Sequential([Dense(2)], input_dim=3)
    model.compile("mse", optimizer)
    return model


def test_a_plain_callable_lr_saves_without_the_optimizer(tmp_path):
    _compiled(optim.SGD(lambda step: 0.1)).save(
        tmp_path / "m.safetensors", include_optimizer=False
    )
    assert gpunn.load(tmp_path / "m.safetensors").optimizer is None


def test_an_unbuilt_model_is_not_saved(tmp_path):
    with pytest.raises(NotBuiltError):
        gpunn.Sequential([Dense(2)]).save(tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


# ------------------------------------------------------------------ bad files
@pytest.fixture
def saved(tmp_path):
    """A saved model: its path, tensors and metadata."""
    X, _ = data()
    model = gpunn.Sequential([Standardize(), Dense(4), BatchNorm()], input_dim=8)
    model.adapt(X)
    model.compile("mse", "adam")
    path = tmp_path / "m.safetensors"
    model.save(path)
    return (path, *read_file(path))


def rewrite(path, tensors, metadata):
    write_file(path, tensors, metadata)  # valid checksums: only the content is wrong
    return path


def test_tensors_that_do_not_fit_are_listed(saved):
    path, tensors, metadata = saved
    del tensors["dense_1.bias"]
    tensors["dense_9.kernel"] = np.zeros(3, np.float32)
    tensors["dense_1.kernel"] = np.zeros((8, 5), np.float32)
    tensors["batchnorm_2.gamma"] = tensors["batchnorm_2.gamma"].astype(np.float64)
    with pytest.raises(CheckpointError) as info:
        gpunn.load(rewrite(path, tensors, metadata))
    message = str(info.value)
    assert str(path) in message
    assert "missing ['dense_1.bias']" in message
    assert "unexpected ['dense_9.kernel']" in message
    assert "dense_1.kernel: file float32 (8, 5), model float32 (8, 4)" in message
    assert "batchnorm_2.gamma: file float64 (4,)" in message


def test_missing_state_is_listed(saved):
    path, tensors, metadata = saved
    del tensors["standardize_0.scale"]
    with pytest.raises(CheckpointError, match=r"missing \['standardize_0.scale'\]"):
        gpunn.load(rewrite(path, tensors, metadata))


def test_non_finite_weights_are_refused(saved):
    path, tensors, metadata = saved
    tensors["dense_1.kernel"][0, 0] = np.nan
    with pytest.raises(CheckpointError, match="dense_1.kernel contain NaN"):
        gpunn.load(rewrite(path, tensors, metadata))


def test_invalid_state_names_the_layer(saved):
    path, tensors, metadata = saved
    tensors["batchnorm_2.running_var"][:] = -1
    with pytest.raises(CheckpointError, match="state of layer batchnorm_2"):
        gpunn.load(rewrite(path, tensors, metadata))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s["config"]["layers"][1].update({"class": "os.system"}), "unknown"),
        (lambda s: s["config"]["layers"][1].update({"class": "Layer"}), "unknown"),
        (lambda s: s["config"]["layers"][1]["config"].update(units=-4), "units"),
        (lambda s: s["config"].update(dtype="float16"), "dtype"),
        (lambda s: s["config"]["compile"].update(loss="nope"), "loss"),
        (lambda s: s["config"].update(input_dim=10**9), "would allocate"),
        (lambda s: s.update(state="all"), "list of tensor names"),
        (lambda s: s.pop("config"), "'config' and 'state'"),
    ],
)
def test_invalid_configurations_are_refused(saved, change, match):
    path, tensors, metadata = saved
    config = json.loads(metadata["gpunn.model"])
    change(config)
    metadata["gpunn.model"] = json.dumps(config)
    with pytest.raises(CheckpointError, match=match) as info:
        gpunn.load(rewrite(path, tensors, metadata))
    assert str(path) in str(info.value)


def test_huge_widths_are_refused_before_allocating(saved):
    path, tensors, metadata = saved
    config = json.loads(metadata["gpunn.model"])
    config["config"]["layers"][1]["config"]["units"] = 10**9
    metadata["gpunn.model"] = json.dumps(config)
    rewrite(path, tensors, metadata)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="would allocate 8000000000 values"):
            gpunn.load(path)
        assert tracemalloc.get_traced_memory()[1] < 2**22
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("text", ['{"config": NaN, "state": []}', "{", "[]"])
def test_invalid_model_json_is_refused(saved, text):
    path, tensors, metadata = saved
    metadata["gpunn.model"] = text
    with pytest.raises(CheckpointError, match="gpunn.model"):
        gpunn.load(rewrite(path, tensors, metadata))


def test_files_without_a_model_are_refused(tmp_path):
    write_file(tmp_path / "w.safetensors", {"w": np.zeros(2)}, {})
    with pytest.raises(CheckpointError, match="not a gpunn model file"):
        gpunn.load(tmp_path / "w.safetensors")
    write_file(tmp_path / "c.safetensors", {}, {"gpunn.training_state": "{}"})
    with pytest.raises(CheckpointError, match="resume_from"):
        gpunn.load(tmp_path / "c.safetensors")


# ------------------------------------------------------------------ other tools
def test_the_safetensors_package_loads_model_files(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    X, _ = data()
    model = gpunn.Sequential([Standardize(), Dense(4), BatchNorm()], input_dim=8)
    model.adapt(X)
    model.save(tmp_path / "m.safetensors")
    theirs = st_numpy.load_file(str(tmp_path / "m.safetensors"))
    ours = read_file(tmp_path / "m.safetensors")[0]
    assert set(theirs) == set(ours)
    for key, value in ours.items():
        assert theirs[key].dtype == value.dtype and np.array_equal(theirs[key], value)


@pytest.mark.torch
def test_pytorch_loads_the_weights_into_linear_layers(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    X, y = data()
    model = gpunn.Sequential(
        [Dense(5, activation="relu"), Dense(3)], dtype="float64", seed=0
    )
    model.compile("softmax_cross_entropy", "adam")
    model.fit(X, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.safetensors")
    weights = st_torch.load_file(str(tmp_path / "m.safetensors"))
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
    ).double()
    net.load_state_dict(
        {
            "0.weight": weights["dense_0.kernel"].T,  # torch stores (out, in)
            "0.bias": weights["dense_0.bias"],
            "2.weight": weights["dense_1.kernel"].T,
            "2.bias": weights["dense_1.bias"],
        }
    )
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12, atol=1e-12)


def test_from_config_builds_fresh_weights_from_the_seed():
    model = gpunn.Sequential([Dense(4), Dropout(0.5), Dense(2)], input_dim=3, seed=7)
    assert model.get_config() == model_config(model)
    again = gpunn.Sequential.from_config(model.get_config())
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert again.layers[1].seed == model.layers[1].seed
