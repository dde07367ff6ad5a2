"""A crafted file with valid digests raises only CheckpointError (issue "Reliability,
round two", rule 11). SHA-256 is not a MAC: an attacker recomputes it, so every test
here writes its file with correct digests and the checks behind them must hold: zero
dimensions with huge siblings, deep JSON, generator states out of range, and every
field of the training-state JSON; a Hypothesis fuzz re-digests mutated files."""

import hashlib
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_files import config_paths, craft, entry, json_values, mutate, mutations

import gpunn
from gpunn.callbacks import Callback, CSVLogger, EarlyStopping, ReduceLROnPlateau
from gpunn.checkpointing import ModelCheckpoint
from gpunn.errors import CheckpointError, UnsafeFileError
from gpunn.layers import BatchNorm, Dense, Dropout, GaussianNoise
from gpunn.persistence.safetensors import header_digest, read_file, write_file

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
STATE = "gpunn.training_state"
X = np.random.default_rng(0).normal(size=(40, 6))
Y = np.arange(40) % 3


def build():
    layers = [
        Dense(8, activation="relu"),
        BatchNorm(),
        Dropout(0.2),
        GaussianNoise(0.1),
        Dense(3),
    ]
    model = gpunn.Sequential(layers, input_dim=6, seed=0, backend="cpu")
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(0.01, clip_norm=1.0))
    return model


class Begun(Exception):
    """Raised when training begins: the checkpoint was accepted and restored."""


class StopAtBegin(Callback):
    def on_train_begin(self, logs=None):
        raise Begun


def callbacks(folder):
    return [
        EarlyStopping("val_loss", patience=5, restore_best_weights=True),
        ReduceLROnPlateau("loss", patience=0, min_delta=10),
        CSVLogger(folder / "log.csv"),
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A mid-epoch checkpoint with every kind of state: BatchNorm statistics,
    dropout and noise generators, clipping's norm, callbacks with arrays."""
    folder = tmp_path_factory.mktemp("crafted")
    save = ModelCheckpoint(folder / "c-{epoch}-{batch}.st", save_freq=7)
    build().fit(
        X,
        Y,
        epochs=2,
        batch_size=8,
        validation_split=0.2,
        verbose=0,
        callbacks=[*callbacks(folder), save],
    )
    path = folder / "c-2-3.st"
    return path, read_file(path)


def resumed(path, folder):
    """Resumes ``path`` into a fresh model; returns it (the restore accepted) or
    raises the CheckpointError. Nothing else may escape."""
    model = build()
    try:
        model.fit(
            X,
            Y,
            epochs=3,
            batch_size=8,
            validation_split=0.2,
            verbose=0,
            callbacks=[*callbacks(folder), StopAtBegin()],
            resume_from=path,
        )
    except Begun:
        return model
    raise AssertionError("fit went on without calling on_train_begin")


def untouched(model, fresh) -> bool:
    same = all(
        np.array_equal(a, b)
        for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True)
    )
    return same and model.optimizer.steps == 0


def edited_state(checkpoint, tmp_path, edit):
    """The checkpoint with ``edit(state)`` applied, written with valid digests (the
    string ``"DEEP<n>"`` becomes ``n`` nested lists, beyond what json.dumps does)."""
    _, (tensors, metadata) = checkpoint
    state = json.loads(metadata[STATE])
    edit(state)
    text = json.dumps(state)
    if '"DEEP' in text:
        depth = int(text.split('"DEEP', 1)[1].split('"', 1)[0])
        text = text.replace(f'"DEEP{depth}"', "[" * depth + "0" + "]" * depth)
    out = tmp_path / "edited.st"
    write_file(out, tensors, {**metadata, STATE: text})
    return out


def refused(path, tmp_path, match):
    model = build()
    fresh = build()
    with pytest.raises(CheckpointError, match=match) as info:
        model.fit(
            X,
            Y,
            epochs=3,
            batch_size=8,
            validation_split=0.2,
            verbose=0,
            callbacks=callbacks(tmp_path),
            resume_from=path,
        )
    assert str(path) in str(info.value)
    assert untouched(model, fresh)


# ------------------------------------------------------------------ named cases
@pytest.mark.parametrize(
    ("dtype", "shape"), [("F32", [0, 2**62]), ("F64", [2**61, 0]), ("U8", [0, 2**63])]
)
def test_a_zero_dimension_does_not_hide_huge_siblings(tmp_path, dtype, shape):
    """NumPy refuses these shapes itself (size * itemsize, zeros not counted, over
    2**63): once a raw ValueError from np.zeros."""
    path = craft(tmp_path / "z.st", {"t": entry(dtype, shape, (0, 0))})
    with pytest.raises(UnsafeFileError, match="overflows"):
        read_file(path, require_checksum=False)


def test_a_huge_empty_tensor_in_a_checkpoint_is_refused_at_once(checkpoint, tmp_path):
    _, (tensors, metadata) = checkpoint
    spoiled = {**tensors, "loop.stats.0": np.zeros((2**40, 0), np.float64)}
    out = tmp_path / "empty.st"
    write_file(out, spoiled, metadata)
    refused(out, tmp_path, r"loop.stats.0: checkpoint float64 \(1099511627776, 0\)")


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deeply_nested_training_state_is_refused(checkpoint, tmp_path, depth):
    def edit(state):
        state["callbacks"]["History"]["history"]["loss"] = f"DEEP{depth}"

    refused(edited_state(checkpoint, tmp_path, edit), tmp_path, "nested")


def test_deeply_nested_model_json_is_refused(checkpoint, tmp_path):
    _, (tensors, metadata) = checkpoint
    saved = json.loads(metadata["gpunn.model"])
    saved["config"]["layers"][0]["config"]["name"] = "DEEP"
    deep = json.dumps(saved).replace('"DEEP"', "[" * 100_000 + "]" * 100_000)
    out = tmp_path / "deep.st"
    write_file(out, tensors, {**metadata, "gpunn.model": deep})
    with pytest.raises(CheckpointError, match="nested"):
        gpunn.load(out)


def test_deeply_nested_header_is_refused(tmp_path):
    header = json.dumps({"t": entry(), "x": {"dtype": "DEEP"}})
    header = header.replace('"DEEP"', "[" * 1000 + "]" * 1000)
    path = craft(tmp_path / "deep.st", header, b"\0" * 8)
    with pytest.raises(UnsafeFileError, match="nests"):
        read_file(path, require_checksum=False)


def at(*keys):
    def edit(value):
        def apply(state):
            target = state
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = value

        return apply

    return edit


GENERATORS = [
    (at("rng", "model", "state", "state"), -1),
    (at("rng", "model", "state", "inc"), 2**200),
    (at("rng", "model", "has_uint32"), 2),
    (at("rng", "model", "uinteger"), -(2**70)),
    (at("rng", "model", "bit_generator"), "MT19937"),
    (at("loop", "epoch_rng", "state", "state"), 2**128),
    (at("loop", "epoch_rng"), None),
    (at("rng", "layers", "gaussiannoise_3", "state", "inc"), -1),
    (at("rng", "layers", "dropout_2", "counter"), -5),
    (at("rng", "layers", "dropout_2", "key"), "0x" + "f" * 40),
]


@pytest.mark.parametrize(("edit", "value"), GENERATORS)
def test_generator_states_out_of_range_are_refused(checkpoint, tmp_path, edit, value):
    refused(
        edited_state(checkpoint, tmp_path, edit(value)), tmp_path, "rng|counter|key"
    )


FIELDS = [
    (at("version"), 3, "version"),
    (at("dtype"), "float16", "dtype"),
    (at("layers"), {}, "layers"),
    (at("seed"), -1, "seed"),
    (at("optimizer", "hyperparameters"), 0, "hyperparameters"),
    (at("optimizer", "hyperparameters", "lr"), float("inf"), "lr"),
    (at("optimizer", "host", "steps"), 2**64, "steps"),
    (at("optimizer", "host", "lr_scale"), 0, "lr_scale"),
    (at("callbacks"), -1, "callbacks"),
    (at("callbacks", "History", "history", "loss"), ["x"], "History"),
    (at("callbacks", "EarlyStopping(val_loss)", "wait"), -1, "wait"),
    (at("loop"), [], "loop"),
    (at("loop", "epoch"), 2**64, "loop.epoch"),
    (at("loop", "batch"), 99, "loop.batch"),
    (at("loop", "config"), 0, "loop.config"),
    (at("loop", "config", "shuffle"), 1, "shuffle"),
    (at("loop", "sizes"), [8, 8], "loop.sizes"),
    (at("loop", "sizes", 0), [], r"loop.sizes\[0\]"),
    (at("loop", "accumulated"), [0, 0], "accumulated"),
    (at("world_size"), 0, "world_size"),
    (at("unexpected"), 1, "unexpected"),
]


@pytest.mark.parametrize(("edit", "value", "match"), FIELDS)
def test_every_field_of_the_training_state_is_checked(
    checkpoint, tmp_path, edit, value, match
):
    refused(edited_state(checkpoint, tmp_path, edit(value)), tmp_path, match)


def test_a_crafted_best_snapshot_is_refused_before_training(checkpoint, tmp_path):
    """Restored best weights are put back at the end of training: a snapshot the
    model cannot take failed there, after the whole run."""
    _, (tensors, metadata) = checkpoint
    state = json.loads(metadata[STATE])
    snapshot = state["callbacks"]["EarlyStopping(val_loss)"]["best_snapshot"]
    name = snapshot["state"]["batchnorm_1.running_var"]["__tensor__"]
    spoiled = {**tensors, name: -np.ones_like(tensors[name])}
    out = tmp_path / "snapshot.st"
    write_file(out, spoiled, metadata)
    refused(out, tmp_path, "running_var")


# ------------------------------------------------------------------ fuzzing
def redigest(raw: bytes) -> bytes:
    """``raw`` with both SHA-256 digests (and the header length) made right again,
    when its header still parses as an object with a metadata object."""
    if len(raw) < 8:
        return raw
    n = min(struct.unpack("<Q", raw[:8])[0], len(raw) - 8)
    data = raw[8 + n :]
    try:
        header = json.loads(raw[8 : 8 + n])
        meta = header.pop("__metadata__")
        meta["gpunn.sha256"] = hashlib.sha256(data).hexdigest()
        meta.pop("gpunn.header_sha256", None)
        meta["gpunn.header_sha256"] = header_digest(header, meta)
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
        return raw
    text = json.dumps({**header, "__metadata__": meta}).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def in_header(raw: bytes):
    """Mutations of the header's bytes (and of the data, with fewer draws)."""
    n = struct.unpack("<Q", raw[:8])[0]
    return st.one_of(
        st.lists(mutations(n), min_size=1, max_size=3).map(
            lambda changes: [(kind, *_shift(args, 8)) for kind, *args in changes]
        ),
        st.lists(mutations(len(raw)), min_size=1, max_size=2),
    )


def _shift(args, offset):
    return (args[0] + offset, *args[1:]) if isinstance(args[0], int) else args


@FUZZ
@given(data=st.data())
def test_redigested_mutations_raise_only_checkpoint_errors(checkpoint, tmp_path, data):
    path, _ = checkpoint
    raw = path.read_bytes()
    changes = data.draw(in_header(raw))
    out = tmp_path / "mutated.st"
    out.write_bytes(redigest(mutate(raw, changes)))
    for load in (read_file, lambda p: gpunn.load(p, backend="cpu")):
        try:
            load(out)
        except CheckpointError as exc:
            assert str(out) in str(exc)
    try:
        resumed(out, tmp_path)
    except CheckpointError as exc:
        assert str(out) in str(exc)


@FUZZ
@given(data=st.data())
def test_tampered_training_states_raise_only_checkpoint_errors(
    checkpoint, tmp_path, data
):
    """Any field replaced by any JSON value, digests valid: the resume either
    restores (the value fits) or raises CheckpointError naming the path."""
    _, (_, metadata) = checkpoint
    state = json.loads(metadata[STATE])
    where = data.draw(st.sampled_from(list(config_paths(state))[1:]))
    replacement = data.draw(json_values())

    def edit(value):
        target = value
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = replacement

    out = edited_state(checkpoint, tmp_path, edit)
    try:
        resumed(out, tmp_path)
    except CheckpointError as exc:
        assert str(out) in str(exc)


@pytest.mark.parametrize("name", ["dense_0.kernel", "optimizer.exp_avg_sq"])
def test_non_finite_parameters_or_moments_are_refused(checkpoint, tmp_path, name):
    """As gpunn.load refuses NaN weights, a resume refuses NaN parameters and
    optimizer state (the first step would only fail later)."""
    _, (tensors, metadata) = checkpoint
    spoiled = {**tensors, name: np.full_like(tensors[name], np.inf)}
    out = tmp_path / "inf.st"
    write_file(out, spoiled, metadata)
    refused(out, tmp_path, rf"{name}: contains NaN or infinity")


def header_paths(header: dict):
    """Paths into the tensor entries of a header (dtype, shape, offsets, items)."""
    for name, info in header.items():
        if name != "__metadata__":
            yield from config_paths(info, (name,))


@FUZZ
@given(data=st.data())
def test_tampered_headers_raise_only_checkpoint_errors(checkpoint, tmp_path, data):
    """A tensor entry's dtype, shape or offsets replaced, digests recomputed: the
    file layer's structural checks, then load and resume, see only
    CheckpointError."""
    path, _ = checkpoint
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    where = data.draw(st.sampled_from(list(header_paths(header))))
    small = st.integers(-3, 70) | st.sampled_from([2**31, 2**62, 2**64])
    replacement = data.draw(small | json_values())
    target = header
    for key in where[:-1]:
        target = target[key]
    if where[1:]:
        target[where[-1]] = replacement
    else:
        header[where[0]] = replacement
    text = json.dumps(header).encode()
    out = tmp_path / "header.st"
    out.write_bytes(redigest(struct.pack("<Q", len(text)) + text + raw[8 + n :]))
    for load in (read_file, lambda p: gpunn.load(p, backend="cpu")):
        try:
            load(out)
        except CheckpointError as exc:
            assert str(out) in str(exc)
    try:
        resumed(out, tmp_path)
    except CheckpointError as exc:
        assert str(out) in str(exc)


def test_a_layer_count_beyond_int64_is_refused(checkpoint, tmp_path):
    """Accepted, a BatchNorm count of 1e30 failed at the next save (int64)."""
    _, (tensors, metadata) = checkpoint
    spoiled = {**tensors, "batchnorm_1.num_batches_tracked": np.array(1e30)}
    out = tmp_path / "count.st"
    write_file(out, spoiled, metadata)
    refused(out, tmp_path, "num_batches_tracked")
