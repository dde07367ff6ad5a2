"""Streaming input (gpunn.data): memory-mapped arrays read in chunks and iterables of
batches train bitwise like the in-memory fit of the same batches; shuffling by chunks
is reproducible and resumes; errors name the chunk's rows; adapt in one pass; a
dataset several times larger than the process may allocate trains (subprocess)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import gpunn
import gpunn.data as gdata
from gpunn import optim
from gpunn.checkpointing import ModelCheckpoint
from gpunn.errors import CheckpointError, InvalidInputError, LabelError
from gpunn.layers import BatchNorm, Dense, Dropout, Standardize, Whiten

N, D, C = 203, 5, 3  # 203 rows: chunks and batches never divide it evenly


@pytest.fixture
def small_chunks():
    """Chunks of 32 rows of 5 float32 features (4 batches of 8)."""
    before = gdata.chunk_bytes()
    gdata.set_chunk_bytes(32 * D * 4)
    yield 32
    gdata.set_chunk_bytes(before)


def dataset(n=N, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    X = (rng.standard_normal((n, D)) + 1.5 * np.eye(C, D)[y]).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n).astype(np.float32)
    return X, y, w


def mapped(tmp_path, *arrays):
    found = []
    for i, array in enumerate(arrays):
        path = tmp_path / f"a{i}.npy"
        np.save(path, array)
        found.append(np.load(path, mmap_mode="r"))
    return found


def make(seed=0, layers=None, lr=0.05):
    layers = layers or [Dense(16, activation="relu"), Dense(C)]
    model = gpunn.Sequential(layers, seed=seed, backend="cpu")
    model.compile("softmax_cross_entropy", optim.Adam(lr))
    return model


def assert_same_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def orders(model, n, chunk_rows, epochs):
    """The row orders ``fit`` draws for ``epochs`` shuffled epochs of a memory-mapped
    array, from a copy of ``model``'s generator."""
    rng = np.random.default_rng()
    rng.bit_generator.state = model.rng.bit_generator.state
    return [gdata.epoch_order(n, chunk_rows, rng) for _ in range(epochs)]


# ------------------------------------------------------------------ memory-mapped
def test_memmap_in_file_order_trains_bitwise_like_arrays(tmp_path, small_chunks):
    X, y, w = dataset()
    Xm, ym, wm = mapped(tmp_path, X, y, w)
    a, b = make(), make()
    ha = a.fit(X, y, epochs=3, batch_size=8, shuffle=False, verbose=0, sample_weight=w)
    hb = b.fit(
        Xm, ym, epochs=3, batch_size=8, shuffle=False, verbose=0, sample_weight=wm
    )
    assert_same_weights(a, b)
    assert ha.history == hb.history


def test_shuffled_memmap_equals_arrays_in_the_same_chunk_order(tmp_path, small_chunks):
    """Two shuffled epochs: the in-memory fit of the rows in the order epoch_order
    gives, epoch by epoch, reaches the same weights bit for bit."""
    X, y, _ = dataset()
    Xm, ym = mapped(tmp_path, X, y)
    streamed, reference = make(), make()
    streamed.build(D)
    reference.build(D)
    epoch_orders = orders(streamed, N, small_chunks, 2)
    streamed.fit(Xm, ym, epochs=2, batch_size=8, verbose=0)
    for order in epoch_orders:
        reference.fit(
            X[order], y[order], epochs=1, batch_size=8, shuffle=False, verbose=0
        )
    assert_same_weights(streamed, reference)
    arrays = make()  # and it is not the in-memory shuffle
    arrays.fit(X, y, epochs=2, batch_size=8, verbose=0)
    assert not np.array_equal(arrays.get_weights()[0], streamed.get_weights()[0])


def test_epoch_order_permutes_chunks_and_rows_within_them():
    order = gdata.epoch_order(N, 32, np.random.default_rng(3))
    assert sorted(order) == list(range(N))
    chunk = order // 32
    changes = np.flatnonzero(np.diff(chunk)) + 1  # a chunk is read whole, once
    assert len(changes) == -(-N // 32) - 1
    assert list(chunk[[0, *changes]]) != sorted(chunk[[0, *changes]])  # permuted
    assert not np.array_equal(order[:32], np.sort(order[:32]))  # and within
    again = gdata.epoch_order(N, 32, np.random.default_rng(3))
    np.testing.assert_array_equal(order, again)


def test_same_seed_same_run_other_seed_other_run(tmp_path, small_chunks):
    X, y, _ = dataset()
    Xm, ym = mapped(tmp_path, X, y)
    runs = []
    for seed in (0, 0, 1):
        model = make(seed=seed)
        model.fit(Xm, ym, epochs=2, batch_size=8, verbose=0)
        runs.append(model.get_weights()[0])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_validation_split_and_class_weight_on_memmap(tmp_path, small_chunks):
    X, y, w = dataset()
    Xm, ym, wm = mapped(tmp_path, X, y, w)
    kwargs = {
        "epochs": 2,
        "batch_size": 8,
        "shuffle": False,
        "verbose": 0,
        "validation_split": 0.25,
        "class_weight": {0: 2.0, 2: 0.5},
    }
    a, b = make(), make()
    ha = a.fit(X, y, sample_weight=w, **kwargs)
    hb = b.fit(Xm, ym, sample_weight=wm, **kwargs)
    assert_same_weights(a, b)
    for key in ha.history:
        np.testing.assert_allclose(ha.history[key], hb.history[key], rtol=1e-6)


def test_evaluate_and_predict_on_memmap(tmp_path, small_chunks):
    X, y, w = dataset()
    Xm, ym, wm = mapped(tmp_path, X, y, w)
    model = make()
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(
        model.predict(Xm, batch_size=16), model.predict(X, batch_size=16)
    )
    streamed = model.evaluate(Xm, ym, batch_size=16, sample_weight=wm)
    arrays = model.evaluate(X, y, batch_size=16, sample_weight=w)
    assert streamed.keys() == arrays.keys()
    for key in arrays:
        assert streamed[key] == pytest.approx(arrays[key], rel=1e-6)


@pytest.mark.parametrize(
    "layers",
    [
        lambda: [Standardize(), Whiten("zca"), Dense(2)],
        lambda: [Whiten(n_components=3), Dense(2)],
    ],
)
def test_adapt_in_one_pass_equals_the_in_memory_statistics(tmp_path, layers):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((N, D)) @ rng.standard_normal((D, D)) + 3).astype(
        np.float32
    )
    (Xm,) = mapped(tmp_path, X)
    before = gdata.chunk_bytes()
    gdata.set_chunk_bytes(40 * D * 4)
    try:
        whole = gpunn.Sequential(layers(), seed=0, backend="cpu")
        whole.adapt(X)
        streamed = gpunn.Sequential(layers(), seed=0, backend="cpu")
        streamed.adapt(Xm)
    finally:
        gdata.set_chunk_bytes(before)
    batches = gpunn.Sequential(layers(), seed=0, backend="cpu")
    batches.adapt(Batches(X, 17))
    for key, value in whole.get_state().items():
        np.testing.assert_allclose(
            streamed.get_state()[key], value, rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(
            batches.get_state()[key], value, rtol=1e-10, atol=1e-12
        )


def test_chunk_errors_name_the_rows(tmp_path, small_chunks):
    X, y, _ = dataset()
    X[70, 2] = np.nan  # chunk 2 (rows 64-95)
    Xm, ym = mapped(tmp_path, X, y)
    model = make()
    with pytest.raises(InvalidInputError, match=r"X contains NaN\. \(rows 64-95 of"):
        model.fit(Xm, ym, epochs=1, batch_size=8, shuffle=False, verbose=0)
    X, y, _ = dataset()
    y[150] = 7
    Xm, ym = mapped(tmp_path, X, y)
    with pytest.raises(LabelError, match=r"got 7 at index 150 \(rows 128-159 of"):
        make().fit(Xm, ym, epochs=1, batch_size=8, verbose=0)


def test_layout_errors_come_before_any_read(tmp_path):
    X, y, _ = dataset()
    Xm, ym = mapped(tmp_path, X, y[:-1])
    with pytest.raises(InvalidInputError, match=r"one entry per sample of X \(203\)"):
        make().fit(Xm, ym, verbose=0)
    model = make()
    model.build(D + 1)
    with pytest.raises(InvalidInputError, match="has 5 features per sample"):
        model.fit(Xm, y, verbose=0)
    (X3,) = mapped(tmp_path, X[:, :, None])
    with pytest.raises(InvalidInputError, match="must be 2-D"):
        make().predict(X3)


def test_memmap_resumes_mid_epoch_bitwise(tmp_path, small_chunks):
    X, y, _ = dataset()
    Xm, ym = mapped(tmp_path, X, y)

    def layers():
        return [Dense(16, activation="relu"), Dropout(0.2), Dense(C)]

    whole = make(layers=layers())
    whole.fit(Xm, ym, epochs=3, batch_size=8, verbose=0)
    path = tmp_path / "ckpt-{epoch}-{batch}.safetensors"
    first = make(layers=layers())
    saver = ModelCheckpoint(str(path), save_freq=11)
    first.fit(Xm, ym, epochs=2, batch_size=8, verbose=0, callbacks=[saver])
    saved = tmp_path / "ckpt-2-7.safetensors"  # epoch 2 in progress (26 batches)
    assert saved.exists()
    resumed = make(layers=layers())
    resumed.fit(Xm, ym, epochs=3, batch_size=8, verbose=0, resume_from=saved)
    assert_same_weights(whole, resumed)
    with pytest.raises(CheckpointError, match="loop.chunk_rows"):
        gdata.set_chunk_bytes(64 * D * 4)
        make(layers=layers()).fit(
            Xm, ym, epochs=3, batch_size=8, verbose=0, resume_from=saved
        )
    with pytest.raises(CheckpointError, match="loop.source"):
        make(layers=layers()).fit(
            X, y, epochs=3, batch_size=8, verbose=0, resume_from=saved
        )


# ------------------------------------------------------------------ iterables
class Batches:
    """A re-iterable of batches (each pass starts over), like a DataLoader."""

    def __init__(self, X, size, y=None, w=None):
        self.X, self.size, self.y, self.w = X, size, y, w

    def __iter__(self):
        for i in range(0, len(self.X), self.size):
            part = slice(i, i + self.size)
            if self.y is None:
                yield self.X[part]
            elif self.w is None:
                yield self.X[part], self.y[part]
            else:
                yield self.X[part], self.y[part], self.w[part]

    def __len__(self):
        return (len(self.X) + self.size - 1) // self.size


def test_iterable_trains_bitwise_like_arrays():
    X, y, w = dataset()
    a, b = make(), make()
    ha = a.fit(X, y, epochs=2, batch_size=10, shuffle=False, verbose=0, sample_weight=w)
    hb = b.fit(Batches(X, 10, y, w), epochs=2, verbose=0)
    assert_same_weights(a, b)
    assert ha.history == hb.history


def test_generator_with_steps_per_epoch_continues_across_epochs():
    X, y, _ = dataset()

    def forever():  # batches of 10 of the first 200 rows, over and over
        while True:
            for i in range(0, 200, 10):
                yield X[i : i + 10], y[i : i + 10]

    a, b = make(), make()
    b.fit(forever(), epochs=3, steps_per_epoch=7, verbose=0)
    for epoch in range(3):  # epoch e trains batches 7e .. 7e+6 of the stream
        rows = (epoch * 70 + np.arange(70)) % 200
        a.fit(X[rows], y[rows], batch_size=10, shuffle=False, verbose=0)
    assert_same_weights(a, b)


def test_an_iterable_that_runs_out_stops_training_with_a_warning():
    X, y, _ = dataset()
    generator = ((X[i : i + 10], y[i : i + 10]) for i in range(0, 100, 10))
    model = make()
    with pytest.warns(RuntimeWarning, match="ran out of batches"):
        history = model.fit(generator, epochs=5, steps_per_epoch=4, verbose=0)
    assert history.epoch == [0, 1, 2]  # 4 + 4 + 2 batches
    assert model.optimizer.steps == 10
    once = ((X[i : i + 10], y[i : i + 10]) for i in range(0, 100, 10))
    with pytest.warns(RuntimeWarning, match="ran out of batches"):
        history = make().fit(once, epochs=3, verbose=0)  # a generator: one pass
    assert history.epoch == [0]


def test_iterable_validation_evaluate_and_predict():
    X, y, _ = dataset()
    model = make()
    val = Batches(X[:50], 16, y[:50])
    history = model.fit(Batches(X, 10, y), epochs=2, verbose=0, validation_data=val)
    reference = model.evaluate(X[:50], y[:50], batch_size=16)
    assert history.history["val_loss"][-1] == pytest.approx(reference["loss"], rel=1e-6)
    stepped = model.evaluate(Batches(X, 16, y), steps=2)
    assert stepped["loss"] == pytest.approx(
        model.evaluate(X[:32], y[:32], batch_size=16)["loss"], rel=1e-6
    )
    np.testing.assert_array_equal(model.predict(Batches(X, 16)), model.predict(X))
    np.testing.assert_array_equal(
        model.predict(Batches(X, 16, y), steps=3), model.predict(X[:48])
    )
    model.fit(
        Batches(X, 10, y), verbose=0, validation_data=iter(val), validation_steps=2
    )


def test_iterable_errors():
    X, y, _ = dataset()
    with pytest.raises(gpunn.ArgumentError, match="must be None when X is an iter"):
        make().fit(Batches(X, 10, y), y, verbose=0)
    with pytest.raises(TypeError, match=r"each batch must be a tuple \(x, y\)"):
        make().fit(Batches(X, 10), verbose=0)
    bad = y.copy()
    bad[47] = 9
    with pytest.raises(LabelError, match=r"at index 47 \(batch 4 of the epoch"):
        make().fit(Batches(X, 10, bad), verbose=0)
    with pytest.raises(gpunn.ArgumentError, match="validation_split needs arrays"):
        make().fit(Batches(X, 10, y), validation_split=0.2, verbose=0)
    with pytest.raises(gpunn.ArgumentError, match="steps=2 is for an iterable"):
        make().evaluate(X, y, steps=2)
    with pytest.raises(gpunn.ArgumentError, match="steps_per_epoch=3 is for an iter"):
        make().fit(X, y, steps_per_epoch=3, verbose=0)
    with pytest.raises(InvalidInputError, match="yielded no batch"):
        make().fit(iter(()), verbose=0)
    norm = make(layers=[Dense(4), BatchNorm(), Dense(C)])
    with pytest.raises(InvalidInputError, match="at least 2 per batch"):
        norm.fit(Batches(X[:21], 10, y[:21]), verbose=0)  # the last batch has 1 row


def test_iterable_resumes_mid_epoch_bitwise(tmp_path):
    X, y, _ = dataset()
    data = Batches(X, 10, y)
    whole = make()
    whole.fit(data, epochs=2, verbose=0)
    path = tmp_path / "it-{epoch}-{batch}.safetensors"
    make().fit(
        data, epochs=2, verbose=0, callbacks=[ModelCheckpoint(str(path), save_freq=30)]
    )
    resumed = make()
    resumed.fit(data, epochs=2, verbose=0, resume_from=tmp_path / "it-2-9.safetensors")
    assert_same_weights(whole, resumed)


# ------------------------------------------------------------------ the prefetchers
def test_prefetcher_keeps_order_and_reads_ahead_boundedly():
    backend = gpunn.get_backend("cpu")
    taken = []

    def produce():
        for i in range(50):
            taken.append(i)
            yield (np.full((2, 1), i), None)

    seen = []
    with backend.prefetch(produce(), depth=3) as batches:
        for x, w in batches:
            assert w is None
            seen.append(int(x[0, 0]))
            assert len(taken) <= len(seen) + 3 + 1
            if len(seen) == 20:
                break
    assert seen == list(range(20))
    assert len(taken) <= 24  # the thread stopped, the rest was never read


def test_prefetcher_raises_the_readers_error_at_its_turn():
    backend = gpunn.get_backend("cpu")

    def produce():
        yield (np.zeros(1),)
        raise KeyError("broken reader")

    batches = iter(backend.prefetch(produce()))
    next(batches)
    with pytest.raises(KeyError, match="broken reader"):
        next(batches)


class _Stream:
    """A simulated CUDA stream: copies queue up and run only when an event after
    them is waited for, so a buffer reused too early shows up as wrong data."""

    def __init__(self):
        self.queue, self.done, self.waited = [], 0, []

    def run_until(self, position):
        while self.done < position:
            self.queue[self.done]()
            self.done += 1

    def wait_event(self, event):
        self.waited.append(event)
        event.synchronize()

    def synchronize(self):
        self.run_until(len(self.queue))


class _Event:
    def record(self, stream):
        self.stream, self.position = stream, len(stream.queue)

    def synchronize(self):
        self.stream.run_until(self.position)


class _DeviceArray:
    def __init__(self, shape, dtype, stream=None):
        self.data = np.full(shape, -1, dtype)

    def __getitem__(self, index):
        view = _DeviceArray.__new__(_DeviceArray)
        view.data = self.data[index]
        return view

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def set(self, host, stream):
        target = self.data
        stream.queue.append(lambda: target.__setitem__(Ellipsis, host))


def test_pinned_prefetcher_orders_copies_with_events():
    """The GPU prefetcher's logic with a simulated device whose copies run late:
    every batch arrives intact and in order (a pinned buffer refilled before its
    copy ran, or a device buffer overwritten too early, would show)."""
    from gpunn.backends.prefetch_cuda import CudaCalls, PinnedPrefetcher

    compute = _Stream()
    cuda = CudaCalls(
        stream=_Stream,
        event=_Event,
        current_stream=lambda: compute,
        empty_pinned=lambda shape, dtype: np.empty(shape, dtype),
        empty=_DeviceArray,
    )
    host = [(np.full((3, 2), i, np.float32), np.arange(3) + i) for i in range(20)]
    host.append((np.full((1, 2), 99, np.float32), np.arange(1)))
    got = []
    for x, y in PinnedPrefetcher(cuda, iter(host), depth=2):
        # the compute stream waited for this batch's copy, and not yet for the
        # next one's (which would hold back this batch's compute)
        assert len(compute.waited) == len(got) + 1
        got.append((x.data.copy(), y.data.copy()))
    assert len(got) == len(host)
    for (x, y), (hx, hy) in zip(got, host):
        np.testing.assert_array_equal(x, hx)
        np.testing.assert_array_equal(y, hy)


# ------------------------------------------------------------------ memory bound
CHILD = r"""
import resource, sys
import numpy as np
import gpunn, gpunn.data
from gpunn.layers import Dense
X = np.load(sys.argv[1], mmap_mode="r"); y = np.load(sys.argv[2], mmap_mode="r")
def model(seed):
    m = gpunn.Sequential([Dense(16, activation="relu"), Dense(2)], seed=seed,
                         backend="cpu")
    m.compile("softmax_cross_entropy", gpunn.optim.SGD(0.05))
    return m
gpunn.data.set_chunk_bytes(int(sys.argv[5]))
warm = model(1)  # BLAS, NumPy and a reading thread get their memory before the limit
warm.fit(X[:3 * 4096], y[:3 * 4096], batch_size=4096, verbose=0)
trained = model(0)
trained.build(X.shape[1])
size = [int(l.split()[1]) * 1024 for l in open("/proc/self/status")
        if l.startswith("VmSize")][0]
limit = size + int(sys.argv[4])  # the file is mapped already: only new memory counts
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    np.array(X)
    print("the whole array fits")
except MemoryError:
    print("the whole array does not fit")
trained.fit(X, y, epochs=1, batch_size=4096, verbose=0)
np.save(sys.argv[3], np.concatenate([w.ravel() for w in trained.get_weights()]))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux")
def test_a_memmap_larger_than_the_memory_limit_trains_like_in_memory(tmp_path):
    """153 MiB of features, a process that may allocate 32 MiB more: the shuffled
    streamed fit ends with the weights of the in-memory fit of the same order."""
    n, d, headroom, chunk = 1_000_000, 40, 32 * 2**20, 4 * 2**20
    rng = np.random.default_rng(0)
    X = np.lib.format.open_memmap(tmp_path / "X.npy", "w+", np.float32, (n, d))
    for i in range(0, n, 250_000):
        X[i : i + 250_000] = rng.standard_normal((250_000, d), dtype=np.float32)
    X.flush()
    y = (np.asarray(X[:, 0]) + np.asarray(X[:, 1]) > 0).astype(np.int64)
    np.save(tmp_path / "y.npy", y)
    assert X.nbytes > 4 * headroom
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = tmp_path / "weights.npy"
    args = [str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), str(out)]
    run = subprocess.run(
        [sys.executable, str(script), *args, str(headroom), str(chunk)],
        capture_output=True,
        check=False,
        text=True,
        env={**os.environ, "GPUNN_BACKEND": "cpu"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "the whole array does not fit" in run.stdout
    reference = gpunn.Sequential(
        [Dense(16, activation="relu"), Dense(2)], seed=0, backend="cpu"
    )
    reference.compile("softmax_cross_entropy", optim.SGD(0.05))
    reference.build(d)
    chunk_rows = chunk // (d * 4) // 4096 * 4096
    (order,) = orders(reference, n, chunk_rows, 1)
    rows = np.asarray(X)[order]
    reference.fit(rows, y[order], batch_size=4096, shuffle=False, verbose=0)
    expected = np.concatenate([w.ravel() for w in reference.get_weights()])
    np.testing.assert_array_equal(np.load(out), expected)


def test_warnings_are_not_left_over():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X, y, _ = dataset()
        make().fit(Batches(X, 50, y), epochs=2, verbose=0)


# ------------------------------------------------------------------ checkpoint fields
STATE = "gpunn.training_state"


def _mid_epoch_checkpoints(tmp_path):
    """A mid-epoch checkpoint of a memory-mapped fit and one of an iterable fit."""
    from gpunn.persistence.safetensors import read_file

    X, y, _ = dataset()
    (Xm,) = mapped(tmp_path, X)
    before = gdata.chunk_bytes()
    gdata.set_chunk_bytes(32 * D * 4)
    try:
        make().fit(
            Xm,
            y,
            epochs=1,
            batch_size=8,
            verbose=0,
            callbacks=[ModelCheckpoint(str(tmp_path / "m.st"), save_freq=5)],
        )
    finally:
        gdata.set_chunk_bytes(before)
    make().fit(
        Batches(X, 10, y),
        steps_per_epoch=9,
        verbose=0,
        callbacks=[ModelCheckpoint(str(tmp_path / "i.st"), save_freq=5)],
    )
    return read_file(tmp_path / "m.st"), read_file(tmp_path / "i.st")


@pytest.mark.parametrize(
    ("which", "key", "value", "match"),
    [
        (0, "chunk_rows", 0, "loop.config.chunk_rows"),
        (0, "chunk_rows", "32", "loop.config.chunk_rows"),
        (0, "source", "tape", "loop.config.source"),
        (0, "extra", 1, "loop.config"),
        (1, "n_samples", 5, "loop.config.n_samples"),
        (1, "batch_size", 8, "loop.config.batch_size"),
        (1, "shuffle", True, "loop.config.shuffle"),
        (1, "steps_per_epoch", 0, "loop.config.steps_per_epoch"),
        (1, "steps_per_epoch", 2, "loop.batch"),  # 5 batches done of 2
        (1, "chunk_rows", 4, "loop.config"),
    ],
)
def test_streamed_loop_fields_are_checked_like_the_others(
    tmp_path, which, key, value, match
):
    import json

    from gpunn.persistence import training_state
    from gpunn.persistence.safetensors import write_file

    tensors, metadata = _mid_epoch_checkpoints(tmp_path)[which]
    state = json.loads(metadata[STATE])
    training_state.read(tmp_path / ("m.st", "i.st")[which])  # the file as written
    state["loop"]["config"][key] = value
    out = tmp_path / "edited.st"
    write_file(out, tensors, {**metadata, STATE: json.dumps(state)})
    with pytest.raises(CheckpointError, match=match):
        training_state.read(out)


def test_mixed_precision_and_bfloat16_files_stream_like_arrays(tmp_path, small_chunks):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    X, y, _ = dataset()
    half = X.astype(ml_dtypes.bfloat16)
    Xm, ym, Hm = mapped(tmp_path, X, y, half)
    Hm = Hm.view(ml_dtypes.bfloat16)  # .npy stores bfloat16 as 2-byte voids

    def mixed():
        layers = [Dense(16, activation="relu"), Dense(C)]
        model = gpunn.Sequential(
            layers, seed=0, backend="cpu", precision="mixed_bfloat16"
        )
        model.compile("softmax_cross_entropy", optim.Adam(0.05))
        return model

    a, b = mixed(), mixed()
    a.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    b.fit(Xm, ym, epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert_same_weights(a, b)
    c, d = make(), make()
    c.fit(half.astype(np.float32), y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    d.fit(Hm, ym, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert_same_weights(c, d)


def test_memmap_on_the_data_parallel_path(tmp_path, small_chunks, monkeypatch):
    """A forced world of one rank: the data-parallel code (shards, reductions) on
    memory-mapped data gives the in-memory results; iterables are refused there."""
    import sys

    from gpunn.distributed import ranks as dist_world

    monkeypatch.setenv(dist_world.ENV_VAR, "1")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(dist_world, "_WORLD", None)
    X, y, w = dataset()
    Xm, ym, wm = mapped(tmp_path, X, y, w)
    a, b = make(), make()
    ha = a.fit(
        X,
        y,
        shuffle=False,
        epochs=2,
        batch_size=8,
        verbose=0,
        sample_weight=w,
        validation_data=(X[:50], y[:50]),
    )
    hb = b.fit(
        Xm,
        ym,
        shuffle=False,
        epochs=2,
        batch_size=8,
        verbose=0,
        sample_weight=wm,
        validation_data=(Xm[:50], ym[:50]),
    )
    assert b._data_parallel.size == 1
    assert_same_weights(a, b)
    for key in ha.history:
        np.testing.assert_allclose(ha.history[key], hb.history[key], rtol=1e-6)
    with pytest.raises(gpunn.ArgumentError, match="data-parallel training takes"):
        make().fit(Batches(X, 10, y), verbose=0)


@pytest.mark.parametrize("shuffled", [False, True])
def test_cut_never_reads_a_chunk_after_asking_for_the_next(shuffled):
    """The GPU prefetcher refills a chunk's buffer once the next chunk is asked for:
    a chunk poisoned at that moment must not show in any batch."""
    from gpunn.data import chunks

    n, rows, size = 50, 16, 6
    data = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    rng = np.random.default_rng(0)
    order = chunks.draw_order(n, rows, rng) if shuffled else None
    plan = chunks.plan(n, rows, order)

    def pieces():
        buffer = None
        for chunk, lo, hi, start in plan:
            if buffer is not None:
                buffer[...] = -1  # the buffer is reused for the next chunk
            buffer = data[lo:hi].copy()
            index = None if order is None else order.rows(chunk, hi - lo)
            yield (buffer,), index, start

    take = chunks.rows_of(lambda a, index: np.take(a, index, axis=0))
    batches = chunks.cut(pieces(), size, take, chunks.joined(np))
    got = np.concatenate([b[0].copy() for b in batches])  # each used at once
    expected = (
        np.arange(n)
        if order is None
        else gdata.epoch_order(n, rows, np.random.default_rng(0))
    )
    np.testing.assert_array_equal(got, data[expected])


# ------------------------------------------------------------------ every backend
def test_streamed_sources_match_arrays_on_each_backend(backend, tmp_path, small_chunks):
    """The prefetcher of each backend (pinned buffers and a copy stream on the GPU)
    hands over the batches arrays give: float64, file order and shuffled against
    epoch_order; equal within the multi-step tolerance, bitwise on the CPU."""
    X, y, w = dataset()
    X = X.astype(np.float64)
    Xm, ym, wm = mapped(tmp_path, X, y, w)

    def model():
        layers = [Dense(16, activation="relu"), Dense(C)]
        found = gpunn.Sequential(layers, seed=0, backend=backend, dtype="float64")
        found.compile("softmax_cross_entropy", optim.Adam(0.05))
        found.build(D)
        return found

    def close(a, b):
        for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)

    arrays, streamed, batches = model(), model(), model()
    (order,) = orders(streamed, N, small_chunks, 1)
    gdata.set_chunk_bytes(small_chunks * D * 8)  # 32 rows of float64 a chunk
    streamed.fit(Xm, ym, batch_size=8, verbose=0, sample_weight=wm)
    arrays.fit(
        X[order],
        y[order],
        batch_size=8,
        shuffle=False,
        verbose=0,
        sample_weight=w[order],
    )
    close(arrays, streamed)
    batches.fit(Batches(X[order], 8, y[order], w[order]), verbose=0)
    close(arrays, batches)
    np.testing.assert_allclose(
        streamed.predict(Xm, batch_size=16), streamed.predict(X), rtol=1e-12
    )
