"""The parameter arena: every parameter and gradient is a view into one flat buffer."""

import numpy as np
import pytest

import gpunn
from gpunn.arena import ALIGN_BYTES
from gpunn.layers import Dense


def model_on(backend, dtype="float32"):
    return gpunn.Sequential(
        [Dense(5, activation="relu"), Dense(3, use_bias=False), Dense(2)],
        input_dim=4,
        dtype=dtype,
        backend=backend,
        seed=0,
    )


def test_params_and_grads_are_views_of_two_flat_buffers(backend):
    model = model_on(backend)
    arena = model.arena
    xp = backend.xp
    assert arena.params.ndim == 1 and arena.grads.shape == arena.params.shape
    for layer in model.layers:
        for name, view in layer.params.items():
            assert xp.shares_memory(view, arena.params), (layer.name, name)
            assert xp.shares_memory(layer.grads[name], arena.grads)
    # writing through the flat buffer shows up in the layer's view
    arena.params[...] = 7
    assert float(model.layers[1].params["kernel"][0, 0]) == 7


def test_layout_is_aligned_and_counts_exclude_padding(backend, dtype):
    model = model_on(backend, dtype)
    arena = model.arena
    assert [s.key for s in arena.slots] == [
        "dense_0.kernel",
        "dense_0.bias",
        "dense_1.kernel",
        "dense_2.kernel",
        "dense_2.bias",
    ]
    for s in arena.slots:
        assert (s.offset * dtype.itemsize) % ALIGN_BYTES == 0
    assert arena.num_params == 4 * 5 + 5 + 5 * 3 + 3 * 2 + 2 == model.count_params()
    assert arena.size >= arena.num_params
    assert arena.params.dtype == dtype and arena.grads.dtype == dtype


def test_backward_writes_gradients_only_through_the_views(backend):
    model = model_on(backend, "float64")
    model.compile("softmax_cross_entropy", gpunn.optim.SGD(lr=0.1))
    model.check_finite = False  # the NaN padding would trip the step's finite check
    x = np.random.default_rng(0).standard_normal((8, 4))
    y = np.arange(8) % 2
    model.arena.grads[...] = np.nan  # every used entry must be overwritten
    model.train_step(x, y)
    grads = backend.to_numpy(model.arena.grads)
    for s in model.arena.slots:
        assert np.isfinite(grads[s.offset : s.offset + s.size]).all(), s.key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weights_round_trip(backend, dtype):
    model = model_on(backend, dtype)
    rng = np.random.default_rng(2)
    new = [rng.standard_normal(w.shape) for w in model.get_weights()]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        assert a.dtype == np.dtype(dtype) and isinstance(a, np.ndarray)
        np.testing.assert_array_equal(a, b.astype(dtype))
