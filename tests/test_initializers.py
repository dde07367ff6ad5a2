"""Initializers: distributions, fans, determinism and the model-level seed."""

import numpy as np
import pytest

import gpunn
from gpunn import initializers as init
from gpunn.layers import Dense

SHAPE = (400, 300)  # fan_in 400, fan_out 300: 120,000 draws


def draw(initializer, seed=0, shape=SHAPE, **fans):
    return init.get(initializer)(shape, np.random.default_rng(seed), **fans)


@pytest.mark.parametrize(
    "name, bound",
    [
        ("uniform", 1 / np.sqrt(400)),
        ("glorot_uniform", np.sqrt(6 / 700)),
        ("he_uniform", np.sqrt(6 / 400)),
    ],
)
def test_uniform_families(name, bound):
    w = draw(name)
    assert w.shape == SHAPE and w.dtype == np.float64
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01 * bound
    assert abs(w.mean()) < 0.01 * bound


@pytest.mark.parametrize(
    "name, std",
    [
        ("glorot_normal", np.sqrt(2 / 700)),
        ("he_normal", np.sqrt(2 / 400)),
        ("normal", 0.05),
    ],
)
def test_normal_families(name, std):
    w = draw(name)
    assert abs(w.std() - std) < 0.01 * std
    assert abs(w.mean()) < 0.02 * std


def test_constants_and_custom_parameters():
    assert (draw("zeros") == 0).all() and (draw("ones") == 1).all()
    assert (draw(init.constant(0.25)) == 0.25).all()
    w = draw(init.normal(mean=1.0, std=0.1))
    assert abs(w.mean() - 1) < 0.01 and abs(w.std() - 0.1) < 0.002
    assert np.abs(draw(init.uniform(limit=0.3))).max() <= 0.3


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (30, 30)])
def test_orthogonal(shape):
    w = draw(init.orthogonal(gain=2.0), shape=shape)
    small = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(small, 4 * np.eye(min(shape)), atol=1e-12)


def test_bias_uses_the_fans_it_is_given():
    b = init.get("uniform")(
        (10_000,), np.random.default_rng(0), fan_in=4, fan_out=10_000
    )
    assert np.abs(b).max() <= 0.5 and np.abs(b).max() > 0.49


def test_same_seed_same_values_and_no_global_rng():
    state = np.random.get_state()[1].copy()
    np.testing.assert_array_equal(draw("he_normal", 5), draw("he_normal", 5))
    assert not np.array_equal(draw("he_normal", 5), draw("he_normal", 6))
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_plain_callable():
    layer = Dense(3, kernel_init=lambda shape, rng: np.full(shape, 0.5))
    model = gpunn.Sequential([layer], input_dim=2, backend="cpu", seed=0)
    np.testing.assert_array_equal(model.get_weights()[0], np.full((2, 3), 0.5))


def test_bad_initializers():
    with pytest.raises(ValueError, match="kernel_init must be one of"):
        Dense(3, kernel_init="gaussian")
    with pytest.raises(TypeError, match=r"accept \(shape, rng\)"):
        Dense(3, bias_init=lambda: 0)
    with pytest.raises(ValueError, match="std must be >= 0"):
        init.normal(std=-1)
    with pytest.raises(ValueError, match="orthogonal needs"):
        draw("orthogonal", shape=(5,))


def test_model_weights_follow_the_seed():
    def weights(seed):
        model = gpunn.Sequential(
            [Dense(8, activation="relu"), Dense(3)],
            input_dim=5,
            backend="cpu",
            seed=seed,
        )
        return model.get_weights()

    for a, b in zip(weights(1), weights(1)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(weights(1)[0], weights(2)[0])
    w, b = weights(1)[:2]
    assert w.shape == (5, 8) and (b == 0).all()  # glorot_uniform kernel, zero bias


def test_presets_passed_uncalled_work_like_names():
    for preset, name in (
        (init.he_normal, "he_normal"),
        (init.zeros, "zeros"),
        (init.orthogonal, "orthogonal"),
    ):
        np.testing.assert_array_equal(
            draw(preset, shape=(6, 4)), draw(name, shape=(6, 4))
        )
