"""The GPU backend keeps the reference signatures, and trains like the CPU backend.

The signature checks compare ``inspect.signature`` objects whole (names, kinds,
defaults and annotations), exactly as on a GPU: without CuPy, ``cupy_backend.py`` is
loaded against a stand-in ``cupy`` module that holds only what its class body reads.
The training comparison needs a GPU (marker ``gpu``).
"""

import importlib.util
import inspect
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import gpu_skip_reason

import gpunn
from gpunn.backends import NumpyBackend
from gpunn.backends.kernel_backend import KernelBackend
from gpunn.layers import Dense

SOURCE = Path(gpunn.__file__).parent / "backends" / "cupy_backend.py"


def signature_mismatches(cls) -> list[str]:
    """Every op of the reference whose signature ``cls`` changes, as text."""
    found = []
    for name, ref in inspect.getmembers(NumpyBackend, inspect.isfunction):
        ours, theirs = inspect.signature(getattr(cls, name)), inspect.signature(ref)
        if ours != theirs:
            found.append(f"{cls.__name__}.{name}{ours} != reference {name}{theirs}")
    return found


def cupy_backend_class_without_cupy():
    """``CupyBackend`` loaded from its source with a stand-in ``cupy`` module (only
    the names its class body reads), under another module name, so nothing of it
    stays in ``sys.modules``."""
    memory = types.SimpleNamespace(
        OutOfMemoryError=type("OutOfMemoryError", (MemoryError,), {})
    )
    stand_in = types.ModuleType("cupy")
    stand_in.cuda = types.SimpleNamespace(memory=memory)
    spec = importlib.util.spec_from_file_location("_cupy_backend_source", SOURCE)
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("cupy")
    sys.modules["cupy"] = stand_in
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = saved
    return module.CupyBackend


def test_kernel_mixins_keep_the_reference_signatures():
    """Every op the kernel mixins override takes the reference's arguments, with its
    defaults and annotations, so layers call one signature on both backends."""
    mixins = [
        c
        for c in KernelBackend.__mro__
        if c.__module__.startswith("gpunn.backends.gpu_")
    ]
    assert len(mixins) == 4
    overridden = [n for c in mixins for n in vars(c) if hasattr(NumpyBackend, n)]
    assert len(overridden) > 20, overridden
    assert signature_mismatches(KernelBackend) == []


def test_cupy_backend_keeps_the_reference_signatures_without_a_gpu():
    cls = cupy_backend_class_without_cupy()
    assert cls.__mro__[1] is KernelBackend
    assert signature_mismatches(cls) == []


def test_the_signature_check_catches_a_missing_annotation():
    """A negative control: an override that drops an annotation is reported."""

    class Drifted(KernelBackend):
        def dense_activation(self, x, w, b, activation, options):
            return super().dense_activation(x, w, b, activation, options)

    (mismatch,) = signature_mismatches(Drifted)
    assert "dense_activation" in mismatch


@pytest.mark.gpu
def test_imported_backend_keeps_the_reference_signatures():
    if gpu_skip_reason():
        pytest.skip(f"GPU backend not usable: {gpu_skip_reason()}")
    assert signature_mismatches(type(gpunn.get_backend("gpu"))) == []


@pytest.mark.gpu
@pytest.mark.parametrize(
    "dtype, rtol, atol", [("float64", 1e-6, 1e-6), ("float32", 1e-4, 1e-3)]
)
@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: gpunn.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
        lambda: gpunn.optim.Adam(1e-2),
        lambda: gpunn.optim.AdamW(1e-2, amsgrad=True),
    ],
    ids=["sgd", "adam", "adamw"],
)
def test_gpu_training_matches_cpu_after_ten_steps(optimizer, dtype, rtol, atol):
    if gpu_skip_reason():
        pytest.skip(f"GPU backend not usable: {gpu_skip_reason()}")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((10, 32, 20)), rng.integers(0, 5, (10, 32))

    def run(backend):
        model = gpunn.Sequential(
            [Dense(64, activation="relu"), Dense(32, activation="tanh"), Dense(5)],
            input_dim=20,
            dtype=dtype,
            backend=backend,
            seed=0,
        )
        model.compile("softmax_cross_entropy", optimizer())
        losses = [model.train_step(x, t) for x, t in zip(X, y)]
        return losses, model.get_weights()

    (cpu_losses, cpu_w), (gpu_losses, gpu_w) = run("cpu"), run("gpu")
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=rtol, atol=atol)
    for a, b in zip(gpu_w, cpu_w):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
