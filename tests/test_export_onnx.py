"""ONNX export: every layer and activation, whole models, float32 and float64, opsets,
metadata, refusals and the CLI, each graph checked by onnx.checker and run by
onnxruntime against ``predict`` for several batch sizes."""

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs onnx (pip install 'gpunn[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime")

import gpunn
from gpunn import layers
from gpunn.cli import main
from gpunn.errors import NotBuiltError
from gpunn.export import ExportError, export_onnx, onnx_model, to_onnx
from gpunn.export.trace import _CONVERTERS, ACTIVATION_OPS
from gpunn.layers import (
    Activation,
    BatchNorm,
    Dense,
    Dropout,
    GaussianNoise,
    PReLU,
    Standardize,
    Swish,
    Whiten,
)
from gpunn.precision import bfloat16

BATCHES = (1, 5, 64)  # one graph, several batch sizes: the batch is dynamic
N_IN = 6
# (rtol, atol): float32 as QUALITY's matmul row; float64 graphs are traced from the
# same reference ops, so they agree to rounding
TOL = {"float32": (1e-5, 1e-5), "float64": (1e-12, 1e-12)}


def session(proto):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    data = proto if isinstance(proto, bytes) else proto.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def inputs(rng, n=64, width=N_IN):
    """Normal rows, plus rows with zeros and large values (saturation, kinks)."""
    X = rng.normal(size=(n, width)) * 3
    X[0] = 0.0
    X[1] = np.linspace(-30, 30, width)
    X[2] = np.linspace(-1e-3, 1e-3, width)
    return X


def assert_exports(model, X, dtype=None, opset=17, tol=None):
    """The graph passes onnx.checker, and onnxruntime equals predict for each batch
    size; returns the proto."""
    proto = to_onnx(model, dtype=dtype, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    name = np.dtype(dtype or model.dtype).name
    rtol, atol = tol or TOL[name]
    run = session(proto)
    for batch in BATCHES:
        x = X[:batch]
        got = run.run(None, {"input": x.astype(name)})[0]
        assert got.dtype == np.dtype(name) and got.shape == (len(x), model.output_dim)
        np.testing.assert_allclose(got, model.predict(x), rtol=rtol, atol=atol)
    return proto


def build(layer_list, dtype="float32", width=N_IN, seed=0):
    return gpunn.Sequential(layer_list, input_dim=width, dtype=dtype, seed=seed)


# ---------------------------------------------------------------- activations
ACTIVATION_CASES = [
    ("identity", {}),
    ("linear", {}),
    ("relu", {}),
    ("leaky_relu", {}),
    ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {}),
    ("elu", {"alpha": 0.5}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("silu", {}),
    ("swish", {}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
    ("softmax", {}),
    ("softmax", {"temperature": 2.5}),
    ("softmax", {"temperature": 0.5}),
]


def test_the_cases_cover_every_activation_name():
    assert {name for name, _ in ACTIVATION_CASES} == set(layers.activation_names())
    assert set(ACTIVATION_OPS) == set(layers.activation_names())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, options", ACTIVATION_CASES)
def test_activation_layer(name, options, dtype, rng):
    model = build([Activation(name, **options)], dtype)
    assert_exports(model, inputs(rng))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, options", ACTIVATION_CASES)
def test_dense_activation(name, options, dtype, rng):
    model = build([Dense(5, activation={"activation": name, **options})], dtype)
    assert_exports(model, inputs(rng))


@pytest.mark.parametrize(
    "layer",
    [
        layers.ELU(0.3),
        layers.GELU("tanh"),
        layers.Identity(),
        layers.LeakyReLU(0.1),
        layers.ReLU(),
        layers.Sigmoid(),
        layers.SiLU(),
        layers.Softmax(0.7),
        layers.Tanh(),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_named_activation_classes(layer, rng):
    assert_exports(build([layer]), inputs(rng))


def test_exact_gelu_in_float64_is_gpunns_erf_not_a_float32_one(rng):
    """onnxruntime has no float64 Erf: the graph traces gpunn's own erf instead."""
    model = build([Activation("gelu")], "float64")
    proto = assert_exports(model, inputs(rng))
    ops = {node.op_type for node in proto.graph.node}
    assert "Erf" not in ops and "Where" in ops
    assert "Erf" in {n.op_type for n in to_onnx(model, "float32").graph.node}


# ---------------------------------------------------------------- layers
def fitted_batch_norm(dtype, affine=True, rng=None):
    model = build([Dense(4), BatchNorm(affine=affine, eps=1e-3)], dtype)
    model.compile("mse", gpunn.optim.SGD(0.1), metrics=())
    X = rng.normal(size=(32, N_IN)) * 2 + 5  # large running mean
    model.fit(X, rng.normal(size=(32, 4)), epochs=2, batch_size=8, verbose=0)
    assert not np.allclose(model.get_state()["batchnorm_1.running_mean"], 0)
    return model, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_with_running_statistics(affine, dtype, rng):
    model, X = fitted_batch_norm(dtype, affine, rng)
    assert_exports(model, X)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: Dense(5, use_bias=False),
        lambda: Dropout(0.5),
        lambda: GaussianNoise(1.0),
        lambda: PReLU(),
        lambda: PReLU(init=-0.3, per_unit=True),
        lambda: Swish(1.7),
        lambda: Swish(0.6, trainable=True),
    ],
    ids=[
        "dense_no_bias",
        "dropout",
        "noise",
        "prelu",
        "prelu_unit",
        "swish",
        "swish_t",
    ],
)
def test_layer(make, dtype, rng):
    model = build([make()], dtype)
    if model.count_params():  # values other than the initial ones
        model.set_weights([w + rng.normal(size=w.shape) for w in model.get_weights()])
    assert_exports(model, inputs(rng))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "make",
    [
        Standardize,
        lambda: Whiten("pca"),
        lambda: Whiten("zca", eps=1e-3),
        lambda: Whiten("pca", n_components=3),
    ],
    ids=["standardize", "pca", "zca", "pca3"],
)
def test_preprocessing_with_fitted_statistics(make, dtype, rng):
    X = rng.normal(size=(80, N_IN)) @ rng.normal(size=(N_IN, N_IN)) + 100
    X[:, 2] = 7.0  # a constant feature: Standardize's scale 1
    model = build([make()], dtype)
    model.adapt(X)
    assert_exports(model, X)


def test_every_gpunn_layer_class_is_exported():
    classes = {
        cls
        for name in layers.__all__
        if inspect.isclass(cls := getattr(layers, name))
        and issubclass(cls, layers.Layer)
        and cls is not layers.Layer
    }
    assert classes == set(_CONVERTERS)


# ---------------------------------------------------------------- whole models
def test_classifier_returns_probabilities_like_predict(rng):
    X = inputs(rng, 120) + 10
    y = (X[:, 0] > 10).astype(int) + (X[:, 1] > 10)
    model = build(
        [
            Standardize(),
            Dense(16, activation="relu"),
            BatchNorm(),
            Dropout(0.2),
            Dense(8, activation="gelu"),
            Dense(3, activation="softmax"),
        ]
    )
    model.adapt(X)
    model.compile("categorical_crossentropy", gpunn.optim.Adam(1e-2))
    model.fit(X, y, epochs=3, batch_size=16, verbose=0)
    proto = assert_exports(model, X)
    probabilities = session(proto).run(None, {"input": X.astype(np.float32)})[0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-6)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["gpunn.final_activation"] == "softmax"


def test_float64_model_in_float64_and_in_float32(rng):
    X = inputs(rng) @ rng.normal(size=(N_IN, N_IN))
    model = build(
        [
            Whiten("zca"),
            Dense(12, activation={"activation": "elu", "alpha": 0.7}),
            BatchNorm(momentum=None),
            PReLU(per_unit=True),
            Dense(7, activation="gelu"),
            Swish(1.3, trainable=True),
            GaussianNoise(0.1),
            Dense(2, activation="sigmoid"),
        ],
        "float64",
    )
    model.adapt(X)
    model.compile("binary_crossentropy", gpunn.optim.SGD(0.05), metrics=())
    model.fit(X, (X[:, :2] > 0).astype(float), epochs=2, batch_size=16, verbose=0)
    assert_exports(model, X)  # float64 graph
    proto = assert_exports(model, X, dtype="float32")  # weights rounded
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["gpunn.dtype"] == "float32"
    assert props["gpunn.model_dtype"] == "float64"


def test_model_on_each_backend(backend, rng):
    X = inputs(rng)
    model = gpunn.Sequential(
        [Standardize(), Dense(9, activation="tanh"), BatchNorm(), Dense(3)],
        input_dim=N_IN,
        backend=backend,
        seed=3,
    )
    model.adapt(X)
    assert_exports(model, X)


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_opsets_and_the_ir_version_onnxruntime_loads(opset, rng):
    model = build([Standardize(), Dense(4, activation="leaky_relu"), Dense(3)])
    model.adapt(inputs(rng))
    proto = assert_exports(model, inputs(rng), opset=opset)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
    expected = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    assert proto.ir_version == expected
    if opset == 17:
        assert proto.ir_version == 8


def test_graph_interface_and_metadata(rng):
    model = build([Dense(4, activation="relu"), Dropout(0.1), Dense(3)], seed=5)
    proto = to_onnx(model)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    for value, width in ((inp, N_IN), (out, 3)):
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", ""]
        assert dims[1].dim_value == width
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert (inp.name, out.name) == ("input", "output")
    assert proto.producer_name == "gpunn"
    assert proto.producer_version == gpunn.__version__
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["gpunn.version"] == gpunn.__version__
    assert props["gpunn.input_dim"] == str(N_IN)
    assert props["gpunn.output_dim"] == "3"
    assert props["gpunn.input_names"] == '["input"]'
    assert props["gpunn.output_names"] == '["output"]'
    assert props["gpunn.final_activation"] == "none"
    assert '["dense_0", "Dense"]' in props["gpunn.layers"]
    assert not [n for n in proto.graph.node if n.op_type == "Dropout"]


def test_a_model_that_is_only_the_identity(rng):
    model = build([Dropout(0.3)])
    proto = assert_exports(model, inputs(rng))
    assert [n.op_type for n in proto.graph.node] == ["Identity"]


def test_export_changes_nothing_in_the_model(rng):
    model, X = fitted_batch_norm("float32", True, rng)
    before = (model.get_weights(), model.get_state(), model.predict(X))
    to_onnx(model)
    after = (model.get_weights(), model.get_state(), model.predict(X))
    for a, b in zip(
        before[0] + list(before[1].values()), after[0] + list(after[1].values())
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(before[2], after[2])


# ---------------------------------------------------------------- files
def test_export_writes_the_file_atomically(tmp_path, rng):
    model = build([Dense(3, activation="softmax")])
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    model.export(path)
    assert os.listdir(tmp_path) == ["model.onnx"]  # no temp file left
    X = inputs(rng)
    got = session(path.read_bytes()).run(None, {"input": X.astype(np.float32)})[0]
    np.testing.assert_allclose(got, model.predict(X), rtol=1e-5, atol=1e-5)
    onnx.checker.check_model(str(path), full_check=True)
    refused = build([Dense(3), Standardize()])  # not adapted
    with pytest.raises(NotBuiltError):
        refused.export(path)
    assert path.read_bytes() == model_bytes(model)
    assert os.listdir(tmp_path) == ["model.onnx"]


def model_bytes(model):
    return to_onnx(model).SerializeToString()


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match="No space"):
        export_onnx(build([Dense(3)]), path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.onnx"]


# ---------------------------------------------------------------- refusals
class Doubler(layers.Layer):
    def forward(self, x, training=False):
        return 2 * x


class MyDense(Dense):
    pass


@pytest.mark.parametrize(
    "layer, kind", [(Doubler(), "Doubler"), (MyDense(3), "MyDense")]
)
def test_other_layers_are_refused_by_name(layer, kind, tmp_path):
    model = build([Dense(4), layer])
    with pytest.raises(
        ExportError, match=f"layer '{model.layers[1].name}' of type {kind}"
    ):
        model.export(tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)


def test_an_activation_without_an_exporter_is_refused_by_name():
    model = build([Dense(4, activation="relu")])
    model.layers[0].activation.activation = "mish"  # as a future activation would be
    with pytest.raises(ExportError, match="activation 'mish' of layer 'dense_0'"):
        to_onnx(model)


def test_bfloat16_is_refused_with_the_alternative():
    pytest.importorskip("ml_dtypes")
    for dtype in ("bfloat16", bfloat16()):
        with pytest.raises(ExportError, match="dtype='float16' or 'float32'"):
            to_onnx(build([Dense(3)]), dtype=dtype)


@pytest.mark.parametrize("precision", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("dtype", ["float16", np.float16, "half"])
def test_float16_graphs_match_predict_to_float16_tolerance(precision, dtype):
    """A float16 graph (weights rounded once, float16 input and output), for a
    float32 model and for mixed-precision ones, against predict."""
    if precision != "float32":
        pytest.importorskip("ml_dtypes")
    layers = [
        Standardize(),
        Dense(16, activation="gelu"),
        BatchNorm(),
        Dense(8, activation={"activation": "leaky_relu", "negative_slope": 0.2}),
        Dense(5, activation="softmax"),
    ]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6)).astype(np.float32)
    model = gpunn.Sequential(layers, seed=0, backend="cpu", precision=precision)
    model.compile("softmax_cross_entropy", "adam", metrics=[])
    model.adapt(X)
    model.fit(X, rng.integers(0, 5, 64), epochs=2, batch_size=16, verbose=0)
    proto = to_onnx(model, dtype=dtype)
    session = ort.InferenceSession(proto.SerializeToString())
    ours = session.run(None, {"input": X.astype(np.float16)})[0]
    assert ours.dtype == np.float16
    np.testing.assert_allclose(ours.astype(np.float32), model.predict(X), atol=1e-2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dtype": "int8"}, ValueError, "dtype must be one of"),
        ({"dtype": 5}, ValueError, "dtype must be one of"),
        ({"opset": 12}, ValueError, "opset must be >= 13"),
        ({"opset": 10_000}, ValueError, "the installed onnx's newest"),
        ({"opset": "17"}, TypeError, "opset must be an int"),
        ({"opset": True}, TypeError, "opset must be an int"),
    ],
)
def test_bad_arguments(kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        build([Dense(3)]).export(tmp_path / "m.onnx", **kwargs)
    assert not os.listdir(tmp_path)


def test_bad_paths(tmp_path):
    model = build([Dense(3)])
    with pytest.raises(IsADirectoryError, match="is a directory"):
        model.export(tmp_path)
    model.export(tmp_path / "new" / "dirs" / "m.onnx")  # created, as by save
    onnx.checker.check_model(str(tmp_path / "new" / "dirs" / "m.onnx"))
    with pytest.raises(TypeError, match="path must be a str or path-like, got int"):
        model.export(5)


def test_unbuilt_model_and_unadapted_layers():
    with pytest.raises(NotBuiltError, match="model is not built"):
        to_onnx(gpunn.Sequential([Dense(3)]))
    for layer in (Standardize(), Whiten()):
        model = build([layer])
        with pytest.raises(NotBuiltError, match=f"layer '{layer.name}' .*adapt"):
            to_onnx(model)


def test_weights_over_one_files_limit_are_refused(monkeypatch):
    monkeypatch.setattr(onnx_model, "MAX_BYTES", 100)
    with pytest.raises(ExportError, match="over the 2 GiB"):
        to_onnx(build([Dense(8)]))


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ModuleNotFoundError, match=r"gpunn\[onnx\]"):
        build([Dense(3)]).export(tmp_path / "m.onnx")


def test_only_models_are_exported():
    with pytest.raises(TypeError, match="model must be a gpunn.Sequential, got Dense"):
        to_onnx(Dense(3))


def test_cli_without_onnx_names_the_extra(saved, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    path, _ = saved
    code, _, err = cli(capsys, "export", path, path.parent / "m.onnx")
    assert code == 1 and "gpunn[onnx]" in err
    assert not (path.parent / "m.onnx").exists()


def test_import_gpunn_does_not_import_onnx():
    code = (
        "import sys, gpunn, gpunn.cli, gpunn.export; "
        "gpunn.Sequential([gpunn.layers.Dense(2)], input_dim=3, backend='cpu'); "
        "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- CLI
@pytest.fixture
def saved(tmp_path, rng):
    X = inputs(rng)
    model = build(
        [Standardize(), Dense(5, activation="elu"), Dense(3, activation="softmax")]
    )
    model.adapt(X)
    model.compile("categorical_crossentropy")
    path = tmp_path / "model.safetensors"
    model.save(path)
    return path, X


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("dtype", [None, "float64"])
def test_cli_exports_a_saved_model(saved, capsys, dtype):
    path, X = saved
    out_path = path.parent / "model.onnx"
    extra = () if dtype is None else ("--dtype", dtype)
    code, out, err = cli(capsys, "export", path, out_path, "--opset", "18", *extra)
    assert code == 0, err
    assert f"to {out_path}: ONNX opset 18, {dtype or 'float32'}" in out
    proto = onnx.load(str(out_path))
    onnx.checker.check_model(proto, full_check=True)
    name = dtype or "float32"
    got = session(proto).run(None, {"input": X.astype(name)})[0]
    expected = gpunn.load(path, backend="cpu").predict(X)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_cli_exports_a_training_checkpoint(tmp_path, capsys, rng):
    X = inputs(rng)
    model = build([Dense(4, activation="relu"), BatchNorm(), Dense(2)])
    model.compile("mse", "sgd", metrics=())
    path = tmp_path / "ckpt.safetensors"
    checkpoint = gpunn.ModelCheckpoint(str(path))
    model.fit(X, X[:, :2], epochs=1, batch_size=16, verbose=0, callbacks=[checkpoint])
    code, _, err = cli(capsys, "export", path, tmp_path / "m.onnx")
    assert code == 0, err
    got = session(onnx.load(str(tmp_path / "m.onnx"))).run(
        None, {"input": X.astype(np.float32)}
    )[0]
    np.testing.assert_allclose(got, model.predict(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "flags, match",
    [
        (("--opset", "12"), "argument --opset: opset must be >= 13"),
        (("--opset", "x"), "argument --opset: expected an int, got 'x'"),
        (("--dtype", "int8"), "argument --dtype: dtype must be one of"),
        (("--dtype", "bfloat16"), "argument --dtype: dtype='bfloat16' is not exported"),
    ],
)
def test_cli_bad_flags_exit_2_naming_the_flag(saved, capsys, flags, match):
    path, _ = saved
    with pytest.raises(SystemExit) as exc:
        main(["export", str(path), str(path.parent / "m.onnx"), *flags])
    assert exc.value.code == 2
    assert match in capsys.readouterr().err
    assert not (path.parent / "m.onnx").exists()


def test_cli_bad_paths_exit_2(saved, capsys, tmp_path):
    path, _ = saved
    code, _, err = cli(capsys, "export", path, tmp_path)
    assert code == 2 and "gpunn export: error:" in err and "is a directory" in err
    code, _, err = cli(capsys, "export", tmp_path / "none.safetensors", "m.onnx")
    assert code == 2 and "none.safetensors" in err


def test_cli_a_refused_model_exits_2(tmp_path, capsys):
    model = build([Dense(3), Whiten()])  # saved before adapt: nothing to export
    path = tmp_path / "model.safetensors"
    model.save(path)
    code, _, err = cli(capsys, "export", path, tmp_path / "m.onnx")
    assert code == 2 and "no statistics yet" in err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_help_lists_export(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "--opset" in capsys.readouterr().out


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_precision_model_exports_its_float32_masters(precision):
    """dtype=None keeps the float32 master weights: the graph computes in float32
    what predict computes with 16-bit layers, so they agree to 16-bit rounding."""
    pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((32, 6)).astype(np.float32)
    model = gpunn.Sequential(
        [Dense(16, activation="relu"), Dense(4)],
        seed=0,
        backend="cpu",
        precision=precision,
    )
    model.compile("softmax_cross_entropy", "adam", metrics=[])
    model.fit(X, rng.integers(0, 4, 32), epochs=2, batch_size=8, verbose=0)
    proto = to_onnx(model)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["gpunn.dtype"] == "float32"
    out = ort.InferenceSession(proto.SerializeToString()).run(None, {"input": X})[0]
    np.testing.assert_allclose(out, model.predict(X), rtol=3e-2, atol=3e-2)
