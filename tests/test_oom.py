"""Device out-of-memory inside a step, evaluate or predict (the README's "GPU out of memory"):
a DeviceMemoryError (a MemoryError) keeping the backend's numbers, naming the layer,
phase and batch size with a hint; parameters and optimizer state unchanged; a smaller
batch then trains. On the CPU through a backend whose ``out_of_memory_errors`` holds a
stand-in for CuPy's error; on the GPU with a CuPy memory-pool limit (marked ``gpu``)."""

import numpy as np
import pytest
from conftest import gpu_skip_reason

import gpunn
from gpunn import optim
from gpunn.backends import NumpyBackend
from gpunn.errors import GpunnError
from gpunn.faults import DeviceMemoryError
from gpunn.layers import Dense

N = 96


class FakeOutOfMemory(Exception):
    """Stands in for ``cupy.cuda.memory.OutOfMemoryError`` (its message format)."""


class TightMemory(NumpyBackend):
    """The NumPy backend, but ``op`` runs out of memory once it would produce more
    than ``limit`` elements (always, for the optimizer update)."""

    out_of_memory_errors = (FakeOutOfMemory,)

    def __init__(self, op, limit=2048):
        self.op, self.limit = op, limit

    def _allocate(self, op, elements):
        if op == self.op and elements > self.limit:
            raise FakeOutOfMemory(
                f"Out of memory allocating {elements * 4:,} bytes (allocated so far: "
                "1,048,576 bytes, limit set to: 1,056,768 bytes)."
            )

    def dense_forward(self, x, w, b=None):
        self._allocate("dense_forward", x.shape[0] * w.shape[1])
        return super().dense_forward(x, w, b)

    def dense_backward_(self, x, w, dy, dw, db=None, need_dx=True):
        self._allocate("dense_backward_", dy.size)
        return super().dense_backward_(x, w, dy, dw, db, need_dx)

    def adam_update_(self, param, grad, *state, **hyper):
        self._allocate("adam_update_", param.size)
        return super().adam_update_(param, grad, *state, **hyper)


def make(backend):
    model = gpunn.Sequential(
        [Dense(4, activation="relu"), Dense(64, activation="relu"), Dense(3)],
        input_dim=5,
        backend=backend,
        seed=0,
    )
    model.compile("softmax_cross_entropy", optim.Adam(1e-2))
    return model


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, 5)), np.arange(N) % 3


def state_of(model) -> list:
    host, opt = model.backend.to_numpy, model.optimizer
    buffers = [host(buf).tobytes() for buf in opt.state.values()]
    return [host(model.arena.params).tobytes(), *buffers, opt.steps]


def test_out_of_memory_in_forward_names_layer_and_batch_and_a_smaller_one_trains():
    model = make(TightMemory("dense_forward"))  # dense_1: 64 x batch > 2048
    X, y = data()
    before = state_of(model)
    for train in (
        lambda: model.fit(X, y, batch_size=64, verbose=0),
        lambda: model.fit(X, y, batch_size=64, accumulate_steps=2, verbose=0),
        lambda: model.train_step(X[:64], y[:64]),
    ):
        with pytest.raises(DeviceMemoryError) as info:
            train()
        error = info.value
        assert isinstance(error, MemoryError) and isinstance(error, GpunnError)
        assert isinstance(error.__cause__, FakeOutOfMemory)
        message = str(error)
        for part in (
            "in layer dense_1 (Dense.forward) during training with a batch of 64",
            "Out of memory allocating 16,384 bytes (allocated so far: 1,048,576",
            "limit set to: 1,056,768 bytes).",
            "use a smaller batch_size (e.g. 32)",
            "parameters and optimizer state are unchanged",
        ):
            assert part in message, message
        assert state_of(model) == before
    tb = error.__cause__.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert not tb.tb_frame.f_locals  # the failed frames hold no arrays any more
    model.fit(X, y, batch_size=32, verbose=0)
    assert model.optimizer.steps == 3


def test_out_of_memory_in_backward_changes_nothing():
    model = make(TightMemory("dense_backward_"))
    X, y = data()
    before = state_of(model)
    with pytest.raises(DeviceMemoryError, match=r"dense_1 \(Dense.backward\)"):
        model.fit(X, y, batch_size=48, verbose=0)
    assert state_of(model) == before


def test_out_of_memory_in_the_update_says_it_may_be_partial():
    model = make(TightMemory("adam_update_", limit=0))
    X, y = data()
    with pytest.raises(DeviceMemoryError) as info:
        model.train_step(X, y)
    assert "in the optimizer update (Adam) during training" in str(info.value)
    assert "may be partly updated" in str(info.value)


def test_out_of_memory_in_predict_and_evaluate():
    model = make(TightMemory("dense_forward"))
    X, y = data()
    with pytest.raises(DeviceMemoryError, match="during prediction with a batch of 96"):
        model.predict(X, batch_size=1000)
    with pytest.raises(DeviceMemoryError, match="during evaluation with a batch of 64"):
        model.evaluate(X, y, batch_size=64)
    assert model.predict(X, batch_size=32).shape == (N, 3)
    assert np.isfinite(model.evaluate(X, y, batch_size=32)["loss"])


def test_the_cpu_leaves_memory_errors_alone():
    class HostMemory(TightMemory):
        out_of_memory_errors = NumpyBackend.out_of_memory_errors

        def _allocate(self, op, elements):
            raise MemoryError("Unable to allocate 1.00 TiB")

    assert NumpyBackend.out_of_memory_errors == ()
    with pytest.raises(MemoryError, match="Unable to allocate") as info:
        make(HostMemory("dense_forward")).predict(data()[0])
    assert not isinstance(info.value, DeviceMemoryError)


@pytest.mark.gpu
def test_cupy_pool_limit_in_a_step_and_predict():
    if gpu_skip_reason():
        pytest.skip(f"GPU backend not usable: {gpu_skip_reason()}")
    import cupy

    model = gpunn.Sequential(
        [Dense(4096, activation="relu"), Dense(10)], input_dim=64, backend="gpu"
    )
    model.compile("softmax_cross_entropy", optim.Adam(1e-3))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8192, 64)).astype(np.float32)
    y = rng.integers(0, 10, 8192)
    model.train_step(X[:256], y[:256])  # arena, optimizer state, cuBLAS workspace
    before = state_of(model)
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    pool.set_limit(size=pool.used_bytes() + 64 * 2**20)  # one 8192 x 4096 is 128 MiB
    try:
        for call, action in [
            (lambda: model.train_step(X, y), "training"),
            (lambda: model.predict(X, batch_size=8192), "prediction"),
        ]:
            with pytest.raises(DeviceMemoryError) as info:
                call()
            message = str(info.value)
            del info  # the traceback no longer holds device arrays anyway
            assert "Out of memory allocating" in message and "limit set to" in message
            assert "layer dense_0 (Dense.forward)" in message
            assert f"during {action} with a batch of 8192 samples" in message
            assert "use a smaller batch_size" in message
            assert state_of(model) == before
        assert np.isfinite(model.train_step(X[:256], y[:256]))
        assert model.predict(X, batch_size=256).shape == (8192, 10)
    finally:
        pool.set_limit(size=0)
