"""Numerical faults (the README's "Numerical faults"): a NaN or infinite loss or
gradient stops training before its update with NonFiniteError (or TerminateOnNaN's
graceful stop), leaving parameters, optimizer state and step counter bitwise as they
were; the check op; the extreme-logit and activation rows not covered elsewhere (see
test_ops.py, test_losses.py, test_activations.py, test_parametric.py,
test_optim_toolkit.py)."""

import math
import re

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close
from test_activations import EXTREMES, standalone

import gpunn
from gpunn import layers, losses, optim
from gpunn.arena import ParamSpec
from gpunn.backends import NumpyBackend
from gpunn.callbacks import Callback, TerminateOnNaN
from gpunn.errors import NonFiniteError
from gpunn.layers import Dense


class Scale(layers.Layer):
    """``y = s * x`` with one trainable ``s``; ``poisoned`` makes its gradient inf."""

    poisoned = False

    def build(self, n_in, rng):
        super().build(n_in, rng)
        return [ParamSpec("s", (1,), np.ones(1))]

    def forward(self, x, training=False):
        self._x = x
        return x * self.params["s"]

    def backward(self, dy):
        self.grads["s"][...] = np.inf if self.poisoned else (dy * self._x).sum()
        return dy * self.params["s"]


def make(backend, optimizer, loss="softmax_cross_entropy", seed=0):
    model = gpunn.Sequential(
        [Dense(8, activation="relu"), Scale(), Dense(3)],
        input_dim=4,
        backend=backend,
        seed=seed,
    )
    model.compile(loss, optimizer)
    return model


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), np.arange(n) % 3


def state_of(model) -> dict:
    """Bytes of the parameters and optimizer buffers, and the host state (steps)."""
    host = model.backend.to_numpy
    opt = model.optimizer
    buffers = {name: host(buf).tobytes() for name, buf in opt.state.items()}
    return {"params": host(model.arena.params).tobytes(), **buffers, **opt.host_state()}


def overflow(model):  # huge weights: the logits overflow, the loss is NaN
    model.arena.params[...] *= 1e37


def minus_inf_bias(model):  # -inf logit with label smoothing: loss inf, grads finite
    arena = model.arena
    bias = next(s for s in arena.slots if s.key == "dense_2.bias")
    arena.view(arena.params, bias)[1] = -np.inf


def poison_grads(model):  # a finite loss, an infinite gradient
    model.layers[1].poisoned = True


POISONS = {
    "nan_loss": (overflow, r"non-finite loss \(nan\)"),
    "inf_loss": (minus_inf_bias, r"non-finite loss \(inf\)"),
    "gradients": (poison_grads, r"non-finite gradients \(the loss, [-\d.e]+, is"),
}


class PoisonAt(Callback):
    """Poisons the model at (epoch, batch), 0-based, then snapshots its state."""

    def __init__(self, epoch, batch, poison):
        self.at, self.poison, self.before = (epoch, batch), poison, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.poison(self.model)
            self.before = state_of(self.model)


def optimizers():
    return {"sgd": optim.SGD(0.1, momentum=0.9), "adam": optim.Adam(1e-2)}


@pytest.mark.parametrize("accumulate, where", [(1, "batch 5,"), (3, "batches 4-6")])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("poison", sorted(POISONS))
def test_non_finite_step_raises_before_the_update(
    backend, poison, opt, accumulate, where
):
    function, what = POISONS[poison]
    loss = losses.SoftmaxCrossEntropy(label_smoothing=0.1)
    model = make(backend, optimizers()[opt], loss)
    hook = PoisonAt(1, 4, function)  # epoch 2, batch 5 (1-based)
    X, y = data()
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError) as info:
        model.fit(
            X,
            y,
            epochs=3,
            batch_size=4,
            accumulate_steps=accumulate,
            callbacks=[hook],
            verbose=0,
        )
    step = (6 + 4 if accumulate == 1 else 2 + 1) + 1  # steps done + 1
    message = str(info.value)
    assert isinstance(info.value, FloatingPointError)
    assert re.search(what, message), message
    assert f"at epoch 2, {where}" in message
    assert f"before optimizer step {step}:" in message
    assert state_of(model) == hook.before  # parameters, buffers, steps: bitwise


def test_the_last_short_group_is_checked_before_its_step(backend):
    model = make(backend, optim.Adam(1e-2))
    hook = PoisonAt(0, 4, poison_grads)
    X, y = data(22)  # 6 batches: groups of batches 1-4 and 5-6
    with pytest.raises(NonFiniteError, match="epoch 1, batches 5-6 .accumulated"):
        model.fit(X, y, batch_size=4, accumulate_steps=4, callbacks=[hook], verbose=0)
    assert state_of(model) == hook.before and model.optimizer.steps == 1


def test_train_step_raises_before_the_update_even_with_clipping(backend):
    model = make(backend, optim.SGD(0.1, clip_value=1.0, clip_norm=1.0))
    X, y = data()
    model.train_step(X, y)
    poison_grads(model)
    before = state_of(model)
    with pytest.raises(NonFiniteError, match="in train_step, before optimizer step 2"):
        model.train_step(X, y)  # clip_value would have clamped the inf to 1
    assert state_of(model) == before


def test_terminate_on_nan_skips_the_step_and_stops(backend, capsys):
    model = make(backend, optim.Adam(1e-2))
    hook = PoisonAt(1, 4, overflow)
    X, y = data()
    with np.errstate(all="ignore"):
        history = model.fit(
            X, y, epochs=3, batch_size=4, verbose=0, callbacks=[hook, TerminateOnNaN()]
        )
    assert state_of(model) == hook.before and model.optimizer.steps == 10
    assert len(history.epoch) == 2 and math.isnan(history.history["loss"][1])
    printed = capsys.readouterr().out
    assert printed.count("terminating training") == 1
    assert "Batch 4: non-finite loss (nan) at epoch 2, batch 5" in printed


def test_check_finite_off_applies_the_update_as_keras(backend):
    model = make(backend, optim.SGD(0.1))
    model.check_finite = False
    hook = PoisonAt(0, 2, overflow)
    X, y = data()
    with np.errstate(all="ignore"):
        model.fit(
            X, y, epochs=2, batch_size=4, verbose=0, callbacks=[hook, TerminateOnNaN()]
        )
    assert model.optimizer.steps == 3  # the bad batch's update was applied
    assert np.isnan(model.backend.to_numpy(model.arena.params)).any()


def test_one_check_per_optimizer_step():
    class Counting(NumpyBackend):
        calls = 0

        def step_is_finite(self, loss, grads):
            self.calls += 1
            return super().step_is_finite(loss, grads)

    X, y = data(40)
    for accumulate, steps in [(1, 10), (3, 4)]:
        backend = Counting()
        model = make(backend, optim.SGD(0.1))
        model.fit(X, y, batch_size=4, accumulate_steps=accumulate, verbose=0)
        assert backend.calls == model.optimizer.steps == steps


def test_lr_find_is_not_checked_its_loss_diverges_on_purpose():
    model = make("cpu", optim.SGD(0.1))
    before = state_of(model)
    X, y = data(64)
    result = model.lr_find(X, y, 1e-3, 1e30, steps=40, batch_size=8, divergence=1e300)
    assert not np.isfinite(result.losses[-1])
    assert state_of(model) == before


# ------------------------------------------------------------------ the check op
@pytest.mark.parametrize(
    "loss, bad",
    [
        (0.5, None),
        (np.nan, None),
        (np.inf, None),
        (1.0, np.nan),
        (1.0, np.inf),
        (1.0, -np.inf),
        (1.0, "overflow"),
    ],
)
def test_step_is_finite(backend, dtype, loss, bad):
    grads = np.linspace(-1, 1, 37).astype(dtype)
    if bad == "overflow":  # finite gradients whose sum overflows the dtype
        grads[:] = np.finfo(dtype).max / 2
    elif bad is not None:
        grads[5] = bad
    out = backend.step_is_finite(
        backend.asarray(np.array(loss, dtype)), backend.asarray(grads)
    )
    assert out.shape == () and out.dtype == bool
    assert bool(out) == (math.isfinite(loss) and bad is None)
    assert bool(backend.step_is_finite(0.0, backend.asarray(grads[:0])))


# ------------------------------------------------------------------ extreme logits
def ref_smoothed_ce(z, labels, ls):
    """Mean of ``(1 - ls) nll[y] + ls / C sum_c nll_c`` with a float64 log-sum-exp
    (math.fsum), and its gradient ``(softmax - target) / n``."""
    n, c = z.shape
    terms, grad = [], np.zeros_like(z)
    for i in range(n):
        m = max(z[i])
        lse = m + math.log(math.fsum(math.exp(v - m) for v in z[i]))
        nll = [lse - v for v in z[i]]
        spread = math.fsum(nll) if ls else 0.0
        terms.append((1 - ls) * nll[labels[i]] + ls / c * spread)
        target = np.full(c, ls / c)
        target[labels[i]] += 1 - ls
        grad[i] = [math.exp(v - lse) for v in z[i]] - target
    return math.fsum(terms) / n, grad / n


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_cross_entropy_extreme_logits_with_and_without_smoothing(
    backend, dtype, rng, scale, ls
):
    z = rng.standard_normal((6, 5)) * scale
    z[0] = [scale, -scale, 0.0, scale / 2, -scale]  # one huge row
    labels = np.array([1, 0, 4, 2, 3, 0])
    if not ls:  # with smoothing a -inf logit makes the loss inf, as in PyTorch
        z[2, 1] = -np.inf
    z = z.astype(dtype).astype(np.float64)
    loss = losses.SoftmaxCrossEntropy(label_smoothing=ls)
    t = backend.asarray(loss.prepare_targets(labels, 5, dtype))
    value, grad = loss(backend, backend.asarray(z.astype(dtype)), t)
    assert value.dtype == grad.dtype == dtype
    grad = backend.to_numpy(grad)
    assert np.isfinite(float(value)) and np.isfinite(grad).all()
    ref_value, ref_grad = ref_smoothed_ce(z, labels, ls)
    assert_close(float(value), ref_value, dtype, REDUCTION_TOL)
    assert_close(grad, ref_grad, dtype, REDUCTION_TOL)


def test_a_model_with_huge_float32_logits_trains_without_a_fault(backend):
    model = gpunn.Sequential(
        [Dense(3, activation="softmax")], input_dim=4, backend=backend, seed=0
    )
    model.compile("categorical_crossentropy", optim.SGD(1e-6))
    model.arena.params[...] *= 1e4  # logits of order +-1e4
    X, y = data(8)
    w, b = model.get_weights()
    logits = (X.astype(np.float32) @ w + b).astype(np.float64)
    assert np.abs(logits).max() > 1e3
    loss = model.train_step(X, y)
    assert_close(loss, ref_smoothed_ce(logits, y, 0.0)[0], "float32", REDUCTION_TOL)


# ------------------------------------------------------------------ activations
# d activation / dx at 0 (the subgradient at a kink), PyTorch's convention
AT_ZERO = {
    "identity": 1.0,
    "linear": 1.0,
    "relu": 0.0,
    "leaky_relu": 0.01,
    "elu": 1.0,
    "sigmoid": 0.25,
    "tanh": 1.0,
    "silu": 0.5,
    "swish": 0.5,
    "gelu": 0.5,
}


def test_every_activation_has_a_documented_derivative_at_zero():
    assert set(layers.activation_names()) == set(AT_ZERO) | {"softmax"}


@pytest.mark.parametrize("name", sorted(AT_ZERO))
def test_activation_extremes_and_kink(backend, dtype, name):
    layer = standalone(layers.Activation(name), backend, dtype, len(EXTREMES))
    x = np.array([EXTREMES, np.zeros(len(EXTREMES))], dtype)
    y = layer.forward(backend.asarray(x), training=True)
    dx = backend.to_numpy(layer.backward(backend.asarray(np.ones_like(x))))
    assert y.dtype == dx.dtype == dtype
    assert np.isfinite(backend.to_numpy(y)).all() and np.isfinite(dx).all()
    np.testing.assert_allclose(dx[1], AT_ZERO[name], rtol=1e-6)


def test_softmax_and_prelu_extremes_and_kink(backend, dtype):
    x = np.array([EXTREMES, np.zeros(len(EXTREMES))], dtype)
    dy = np.arange(x.size, dtype=dtype).reshape(x.shape)
    for layer in (layers.Softmax(), layers.PReLU(init=0.25)):  # PReLU last
        layer = standalone(layer, backend, dtype, x.shape[1])
        y = backend.to_numpy(layer.forward(backend.asarray(x), training=True))
        dx = backend.to_numpy(layer.backward(backend.asarray(dy)))
        assert np.isfinite(y).all() and np.isfinite(dx).all(), layer
    np.testing.assert_array_equal(y, np.where(x > 0, x, x * dtype.type(0.25)))
    np.testing.assert_array_equal(dx[1], dy[1] * dtype.type(0.25))  # slope at 0
