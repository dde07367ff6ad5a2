"""Every file gpunn saves, it loads (issue "Reliability, round two", rule 7): names
that would break the file's ``<layer>.<entry>`` keys are refused when the layer is
made or named, and what ``gpunn.load`` would refuse is refused by ``save``, with the
same message, before anything is written."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpunn
from gpunn.callbacks import Callback
from gpunn.checkpointing import ModelCheckpoint
from gpunn.errors import CheckpointError
from gpunn.layers import Activation, BatchNorm, Dense, Layer
from gpunn.persistence.safetensors import read_file, write_file

X = np.random.default_rng(0).standard_normal((16, 3))
Y = np.arange(16) % 2


def trained(*layers, input_dim=3):
    model = gpunn.Sequential(list(layers), input_dim=input_dim, seed=0, backend="cpu")
    model.compile("softmax_cross_entropy", "sgd")
    if input_dim == 3:
        model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    return model


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("block.0", ValueError, "'.'"),  # dotted: 'block.0.kernel' splits wrong
        ("optimizer", ValueError, "reserved"),  # checkpoints' optimizer.* tensors
        ("loop", ValueError, "reserved"),
        ("callbacks", ValueError, "reserved"),
        ("\ud800", ValueError, "UTF-8"),  # a lone surrogate cannot be written
        (7, TypeError, "str"),
    ],
)
def test_names_that_break_the_key_scheme_are_refused(name, error, match):
    with pytest.raises(error, match=match):
        Dense(2, name=name)
    layer = Dense(2)
    with pytest.raises(error, match=match):
        layer.name = name  # a rename is checked too
    assert layer.name is None


def test_a_prefix_name_no_longer_takes_another_layers_state():
    """``bn`` and ``bn.x`` once shared keys: ``bn.x.running_mean`` starts with
    ``bn.`` and went to the wrong layer. Dots are refused, so keys split at the
    first dot, unambiguously."""
    with pytest.raises(ValueError, match="'.'"):
        BatchNorm(name="bn.x")
    model = trained(Dense(4, name="bn"), BatchNorm(name="bn_x"), Dense(2, name="x"))
    assert sorted(model.get_state()) == [
        "bn_x.num_batches_tracked",
        "bn_x.running_mean",
        "bn_x.running_var",
    ]


@settings(max_examples=40, derandomize=True, database=None, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=2, unique=True))
def test_every_model_that_can_be_named_saves_and_loads(tmp_path_factory, names):
    try:
        layers = [Dense(4, name=names[0]), BatchNorm(name=names[1]), Dense(2)]
    except (ValueError, TypeError):
        return  # refused when made: nothing to save
    model = trained(*layers)
    path = tmp_path_factory.mktemp("names") / "m.st"
    model.save(path)
    loaded = gpunn.load(path)
    assert [layer.name for layer in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def load_message(tmp_path, tensors, metadata) -> str:
    """What ``gpunn.load`` says about a file with these contents."""
    crafted = tmp_path / "crafted.st"
    write_file(crafted, tensors, metadata)
    with pytest.raises(CheckpointError) as info:
        gpunn.load(crafted)
    return str(info.value).replace(str(crafted), "PATH")


def test_non_finite_weights_are_refused_by_save_as_by_load(tmp_path):
    model = trained(Dense(4), Dense(2))
    model.save(tmp_path / "good.st")

    def spoil(tensors):
        tensors["dense_1.bias"][0] = np.nan

    tensors, metadata = read_file(tmp_path / "good.st")
    spoil(tensors)
    expected = load_message(tmp_path, tensors, metadata)
    model.arena.view(model.arena.params, model.arena.slots[-1])[0] = np.nan
    with pytest.raises(ValueError) as info:
        model.save(tmp_path / "new.st")
    assert str(info.value).replace(str(tmp_path / "new.st"), "PATH") == expected
    assert "NaN" in expected and not (tmp_path / "new.st").exists()


def test_layer_state_load_would_refuse_is_refused_by_save(tmp_path):
    model = trained(Dense(4), BatchNorm(), Dense(2))
    model.save(tmp_path / "good.st")
    tensors, metadata = read_file(tmp_path / "good.st")
    tensors["batchnorm_1.running_var"][0] = np.nan
    expected = load_message(tmp_path, tensors, metadata)
    model.layers[1]._running["var"][0] = np.nan  # as a diverged run leaves it
    with pytest.raises(ValueError) as info:
        model.save(tmp_path / "new.st")
    assert str(info.value).replace(str(tmp_path / "new.st"), "PATH") == expected
    assert "state of layer batchnorm_1" in expected


def test_a_width_load_would_refuse_is_refused_by_save(tmp_path):
    """A layer that would build wider than the file's tensors justify is refused
    by load (a tampered input_dim); save refuses the same model first."""
    model = gpunn.Sequential([Activation("relu")], input_dim=2**21, backend="cpu")
    with pytest.raises(ValueError, match="would allocate") as info:
        model.save(tmp_path / "wide.st")
    assert str(tmp_path / "wide.st") in str(info.value)
    assert not (tmp_path / "wide.st").exists()


def test_custom_layers_keep_the_rule():
    class Twice(Layer):
        def forward(self, x, training=False):
            return 2 * x

    with pytest.raises(ValueError, match="'.'"):
        Twice(name="a.b")


class Spoil(Callback):
    """Puts NaN into the first parameter at the end of epoch ``epoch`` (before the
    checkpoint saves: ModelCheckpoint runs last), as a diverged run would."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.arena.params[0] = np.nan


def test_a_checkpoint_resume_would_refuse_is_not_written(tmp_path):
    """A checkpoint of NaN parameters would not resume, and keep_last would have
    deleted the last good one for it: it is refused, nothing written or pruned."""
    model = trained(Dense(4), Dense(2), input_dim=3)
    model.check_finite = False
    save = ModelCheckpoint(tmp_path / "c{epoch}.st", keep_last=1)
    with pytest.raises(ValueError, match=r"dense_0.kernel.*NaN or infinity"):
        model.fit(X, Y, epochs=3, batch_size=8, verbose=0, callbacks=[Spoil(1), save])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1.st"]
    resumed = trained(Dense(4), Dense(2), input_dim=3)
    resumed.fit(X, Y, epochs=2, batch_size=8, verbose=0, resume_from=tmp_path / "c1.st")
