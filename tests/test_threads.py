"""fit keeps BLAS to the cores the process has been given (or GPUNN_NUM_THREADS)."""

import numpy as np
import pytest

import gpunn
from gpunn.backends import threads
from gpunn.callbacks import Callback
from gpunn.layers import Dense

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads() -> list[int]:
    return [
        info["num_threads"]
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "blas"
    ]


class Record(Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen += blas_threads()


def test_fit_keeps_blas_to_the_budget_then_restores_it(monkeypatch):
    X = np.random.default_rng(0).standard_normal((64, 32))
    y = np.arange(64) % 3
    model = gpunn.Sequential([Dense(32, activation="relu"), Dense(3)], seed=0)
    model.compile("softmax_cross_entropy", "adam")
    monkeypatch.setenv("GPUNN_NUM_THREADS", "1")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        if not before or max(before) < 2:
            pytest.skip("this BLAS runs one thread whatever it is asked")
        record = Record()
        model.fit(X, y, batch_size=16, verbose=0, callbacks=[record])
        assert record.seen and max(record.seen) == 1
        assert blas_threads() == before  # restored after fit


def test_a_blas_set_lower_keeps_its_setting(monkeypatch):
    monkeypatch.setenv("GPUNN_NUM_THREADS", "4")
    lower = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    with lower, threads.blas_limited() as n:
        assert n == 4 and all(t == 1 for t in blas_threads())


def test_the_budget(monkeypatch):
    monkeypatch.delenv("GPUNN_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1)  # docker --cpus=1
    assert threads.usable_cores() == 1 and threads.budget() == 1
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.budget() == threads.usable_cores() >= 1
    monkeypatch.setenv("GPUNN_NUM_THREADS", "3")
    assert threads.budget() == 3
    threads.cap(2)
    try:
        assert threads.budget() == 2
    finally:
        threads.cap(None)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_is_refused_before_training(monkeypatch, value):
    model = gpunn.Sequential([Dense(3)], input_dim=4, seed=0)
    model.compile("softmax_cross_entropy", "sgd")
    before = model.get_weights()
    monkeypatch.setenv("GPUNN_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"GPUNN_NUM_THREADS must be.*{value}"):
        model.fit(np.ones((8, 4)), np.zeros(8, int), verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
