"""Benchmarks of the fused ops alone: softmax cross-entropy, each activation's forward
and backward, and each optimizer's update over an arena of 1M and 64M parameters.

``extra_info["bytes_moved"]`` is the fewest bytes the op must move (each input read
once, each output written once); the summary divides it by the time and by the
backend's copy bandwidth.
"""

from __future__ import annotations

import numpy as np
import pytest
from suite import measure, random

import gpunn
from gpunn.layers import Dense

ROWS, COLS = 4096, 1024
F32 = 4

# name -> (forward(b, x), backward(b, dy, x, y)); backward gets both x and y
ACTIVATIONS = {
    "relu": (lambda b, x: b.relu(x), lambda b, dy, x, y: b.backprop_relu(dy, y)),
    "leaky_relu": (
        lambda b, x: b.leaky_relu(x),
        lambda b, dy, x, y: b.backprop_leaky_relu(dy, y),
    ),
    "elu": (lambda b, x: b.elu(x), lambda b, dy, x, y: b.backprop_elu(dy, y)),
    "sigmoid": (
        lambda b, x: b.sigmoid(x),
        lambda b, dy, x, y: b.backprop_sigmoid(dy, y),
    ),
    "tanh": (lambda b, x: b.tanh(x), lambda b, dy, x, y: b.backprop_tanh(dy, y)),
    "silu": (lambda b, x: b.silu(x), lambda b, dy, x, y: b.backprop_silu(dy, x)),
    "gelu": (lambda b, x: b.gelu(x), lambda b, dy, x, y: b.backprop_gelu(dy, x)),
    "gelu_tanh": (
        lambda b, x: b.gelu(x, "tanh"),
        lambda b, dy, x, y: b.backprop_gelu(dy, x, "tanh"),
    ),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_activation(benchmark, backend, copy_rate, name, direction):
    forward, backward = ACTIVATIONS[name]
    x = random(backend, (ROWS, COLS))
    if direction == "forward":
        fn, arrays = (lambda: forward(backend, x)), 2
    else:
        y, dy = forward(backend, x), random(backend, (ROWS, COLS), seed=1)
        fn, arrays = (lambda: backward(backend, dy, x, y)), 3
    measure(
        benchmark, backend, fn, bytes_moved=arrays * x.size * F32, copy_rate=copy_rate
    )


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_prelu(benchmark, backend, copy_rate, direction):
    """PReLU with one slope per unit; backward includes the slope gradient."""
    x, weight = (
        random(backend, (ROWS, COLS)),
        backend.asarray(np.full(COLS, 0.25, np.float32)),
    )
    if direction == "forward":
        fn, arrays = (lambda: backend.prelu(x, weight)), 2
    else:
        dy, dweight = (
            random(backend, (ROWS, COLS), seed=1),
            backend.xp.empty_like(weight),
        )
        fn, arrays = (lambda: backend.backprop_prelu_(dy, x, weight, dweight)), 3
    measure(
        benchmark, backend, fn, bytes_moved=arrays * x.size * F32, copy_rate=copy_rate
    )


@pytest.mark.parametrize("shape", [(4096, 10), (4096, 1000), (65536, 10)])
def test_softmax_cross_entropy(benchmark, backend, copy_rate, shape):
    """Loss and dlogits in one call: read the logits and labels, write dlogits."""
    logits = random(backend, shape, scale=3.0)
    labels = backend.asarray(np.random.default_rng(1).integers(0, shape[1], shape[0]))
    fn = lambda: backend.softmax_cross_entropy(logits, labels)
    measure(
        benchmark,
        backend,
        fn,
        bytes_moved=2 * logits.size * F32 + 8 * shape[0],
        copy_rate=copy_rate,
    )


OPTIMIZERS = {
    "sgd": lambda: gpunn.optim.SGD(0.01, momentum=0.9),
    "adam": lambda: gpunn.optim.Adam(1e-3),
    "adamw": lambda: gpunn.optim.AdamW(1e-3),
    "nadam": lambda: gpunn.optim.NAdam(1e-3),
    "adamax": lambda: gpunn.optim.Adamax(1e-3),
    "rmsprop": lambda: gpunn.optim.RMSprop(1e-3),
    "adagrad": lambda: gpunn.optim.Adagrad(1e-2),
    "adadelta": lambda: gpunn.optim.Adadelta(1.0),
    "lars": lambda: gpunn.optim.LARS(0.1, momentum=0.9),
    "lamb": lambda: gpunn.optim.LAMB(1e-3),
}
# one Dense(units) on `units` inputs: units * units + units parameters
ARENAS = {"1M": 1000, "64M": 8000}
NORM_PASSES = {"lars": 2, "lamb": 2}  # per-tensor norms read p and g (or u) again


@pytest.mark.parametrize("arena", list(ARENAS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_update(benchmark, backend, copy_rate, name, arena):
    """One ``optimizer.step()`` over the whole arena (host scalars included)."""
    units = ARENAS[arena]
    model = gpunn.Sequential([Dense(units)], input_dim=units, backend=backend, seed=0)
    model.compile("mse", OPTIMIZERS[name]())
    model.arena.grads[...] = random(backend, model.arena.size, scale=1e-2)
    opt = model.optimizer
    per_param = 3 + 2 * len(opt.state_names) + NORM_PASSES.get(name, 0)
    rounds = 3 if arena == "64M" and backend.name == "cpu" else None
    measure(
        benchmark,
        backend,
        opt.step,
        rounds=rounds,
        bytes_moved=per_param * model.arena.size * F32,
        copy_rate=copy_rate,
    )
