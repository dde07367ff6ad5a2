"""Dropout and GaussianNoise: statistics with fixed seeds, mask reuse in backward, eval
identity, reproducibility from the model's seed, no global RNG, argument checks."""

import numpy as np
import pytest
from conftest import assert_close

import gpunn
from gpunn.layers import Dense, Dropout, GaussianNoise


def built(layer, backend, dtype, n_in, seed=0):
    """``layer`` built alone in a model (so its seed comes from the model's one)."""
    gpunn.Sequential([layer], input_dim=n_in, dtype=dtype, backend=backend, seed=seed)
    layer.needs_dx = True  # as if it were not the first layer
    return layer


def host(backend, x):
    return np.asarray(backend.to_numpy(x), dtype=np.float64)


# ------------------------------------------------------------------ Dropout
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_statistics(backend, dtype, rate):
    layer = built(Dropout(rate), backend, dtype, 250)
    x = backend.asarray(np.ones((400, 250), dtype))
    y = layer.forward(x, training=True)
    assert y.dtype == dtype and y.shape == x.shape
    y = host(backend, y)
    zeros = y == 0
    assert abs(zeros.mean() - rate) < 0.01  # 100,000 draws: the sd is < 0.0016
    assert_close(y[~zeros], np.full((~zeros).sum(), 1 / (1 - rate)), dtype)
    assert abs(y.mean() - 1) < 0.03  # E[y] = x


def test_dropout_backward_reuses_the_mask(backend, dtype, rng):
    layer = built(Dropout(0.4), backend, dtype, 7)
    x = rng.uniform(1, 2, (64, 7)).astype(dtype)  # never 0: the mask is y / x
    dy = rng.standard_normal((64, 7)).astype(dtype)
    y = host(backend, layer.forward(backend.asarray(x), training=True))
    dx = layer.backward(backend.asarray(dy))
    assert dx.dtype == dtype
    mask = np.where(y != 0, 1 / 0.6, 0.0)
    assert_close(y, x * mask, dtype)
    assert_close(host(backend, dx), dy * mask, dtype)


def test_dropout_is_the_identity_in_eval_and_at_rate_zero(backend, dtype, rng):
    x = backend.asarray(rng.standard_normal((8, 5)).astype(dtype))
    dy = backend.asarray(rng.standard_normal((8, 5)).astype(dtype))
    assert built(Dropout(0.5), backend, dtype, 5).forward(x) is x
    layer = built(Dropout(0.0), backend, dtype, 5)
    assert layer.forward(x, training=True) is x
    assert layer.backward(dy) is dy


def masks(seed, backend, steps=3):
    layer = built(Dropout(0.5), backend, "float32", 40, seed=seed)
    x = backend.asarray(np.ones((10, 40), np.float32))
    return [host(backend, layer.forward(x, training=True)) for _ in range(steps)]


def test_dropout_masks_come_from_the_model_seed(backend):
    first, again, other = masks(7, backend), masks(7, backend), masks(8, backend)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # same seed: bitwise the same
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[0], first[1])  # a new mask every step


def test_noise_layers_leave_the_global_rng_alone(backend):
    before = np.random.get_state()
    masks(3, backend)
    layer = built(GaussianNoise(1.0), backend, "float64", 4)
    layer.forward(backend.asarray(np.zeros((5, 4))), training=True)
    after = np.random.get_state()
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])


def test_seeds_differ_between_layers_of_one_model():
    first, second = Dropout(0.5), Dropout(0.5)
    gpunn.Sequential([first, second], input_dim=3, backend="cpu", seed=0)
    assert first.seed != second.seed


# ------------------------------------------------------------------ GaussianNoise
@pytest.mark.parametrize("stddev", [0.1, 2.0])
def test_gaussian_noise_statistics(backend, dtype, stddev):
    layer = built(GaussianNoise(stddev), backend, dtype, 250)
    x = np.full((400, 250), 3.0, dtype)
    y = layer.forward(backend.asarray(x), training=True)
    assert y.dtype == dtype and y.shape == x.shape
    noise = host(backend, y) - 3
    assert abs(noise.mean()) < 0.02 * stddev  # 100,000 draws: sd of the mean 0.003
    assert abs(noise.std() / stddev - 1) < 0.02
    assert abs((np.abs(noise) > 2 * stddev).mean() - 0.0455) < 0.005  # normal tails


def test_gaussian_noise_backward_and_eval_are_the_identity(backend, dtype, rng):
    layer = built(GaussianNoise(0.5), backend, dtype, 6)
    x = backend.asarray(rng.standard_normal((9, 6)).astype(dtype))
    dy = backend.asarray(rng.standard_normal((9, 6)).astype(dtype))
    assert layer.forward(x) is x
    y = layer.forward(x, training=True)
    assert not np.array_equal(host(backend, y), host(backend, x))
    assert layer.backward(dy) is dy
    assert built(GaussianNoise(0.0), backend, dtype, 6).forward(x, training=True) is x


def test_gaussian_noise_comes_from_the_model_seed(backend):
    def draw(seed):
        layer = built(GaussianNoise(1.0), backend, "float64", 10, seed=seed)
        return host(backend, layer.forward(backend.asarray(np.zeros((4, 10))), True))

    np.testing.assert_array_equal(draw(1), draw(1))
    assert not np.array_equal(draw(1), draw(2))


# ------------------------------------------------------------------ in a model
def test_training_with_noise_layers_is_reproducible_and_predict_is_deterministic(
    backend, rng
):
    X, y = rng.standard_normal((64, 6)), rng.integers(0, 3, 64)

    def run():
        model = gpunn.Sequential(
            [Dense(16, activation="relu"), Dropout(0.3), GaussianNoise(0.1), Dense(3)],
            backend=backend,
            seed=5,
        )
        model.compile("softmax_cross_entropy", gpunn.optim.SGD(lr=0.1))
        losses = [model.train_step(X[i : i + 16], y[i : i + 16]) for i in (0, 16, 32)]
        return losses, model

    (losses, model), (again, _) = run(), run()
    assert losses == again
    np.testing.assert_array_equal(model.predict(X), model.predict(X))


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_refuses_a_bad_rate(rate):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        Dropout(rate)


@pytest.mark.parametrize("stddev", [-1.0, float("inf")])
def test_gaussian_noise_refuses_a_bad_stddev(stddev):
    with pytest.raises(ValueError, match="stddev must be in"):
        GaussianNoise(stddev)


def test_noise_layers_refuse_non_numbers():
    with pytest.raises(TypeError, match="rate"):
        Dropout("0.5")
    with pytest.raises(TypeError, match="stddev"):
        GaussianNoise(None)


def test_config_round_trip():
    for layer in (Dropout(0.25, name="d"), GaussianNoise(0.5, name="g")):
        again = type(layer)(**layer.get_config())
        assert again.get_config() == layer.get_config()
    assert repr(Dropout(0.25)) == "Dropout(rate=0.25, name=None)"
