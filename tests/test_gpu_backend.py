"""The GPU backend keeps the reference signatures, and trains like the CPU backend.

The signature check inspects the kernel op mixins and reads cupy_backend.py's source,
so it runs without CuPy too; the
training comparison needs a GPU (marker ``gpu``).
"""

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
from conftest import gpu_skip_reason

import gpunn
from gpunn.backends import NumpyBackend
from gpunn.backends.kernel_backend import KernelBackend
from gpunn.layers import Dense

SOURCE = Path(gpunn.__file__).parent / "backends" / "cupy_backend.py"


def _ast_signature(fn: ast.FunctionDef) -> list[tuple[str, str]]:
    args = fn.args
    return (
        [("pos", a.arg) for a in args.posonlyargs + args.args]
        + ([("var", args.vararg.arg)] if args.vararg else [])
        + [("kw", a.arg) for a in args.kwonlyargs]
        + ([("varkw", args.kwarg.arg)] if args.kwarg else [])
    )


_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "pos",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "pos",
    inspect.Parameter.VAR_POSITIONAL: "var",
    inspect.Parameter.KEYWORD_ONLY: "kw",
    inspect.Parameter.VAR_KEYWORD: "varkw",
}
MIXINS = "gpunn.backends.gpu_"


def _is_op(name: str) -> bool:
    return not name.startswith("__") and hasattr(NumpyBackend, name)


def _ref_signature(name: str) -> list[tuple[str, str]]:
    params = inspect.signature(getattr(NumpyBackend, name)).parameters.values()
    return [(_KINDS[p.kind], p.name) for p in params]


def test_overrides_keep_the_reference_signatures():
    """Every op the kernel mixins or CupyBackend override takes the reference's
    arguments, so layers call one signature on both backends."""
    mixins = [c for c in KernelBackend.__mro__ if c.__module__.startswith(MIXINS)]
    assert len(mixins) == 4
    checked = []
    for cls in mixins:
        for name, fn in vars(cls).items():
            if callable(fn) and _is_op(name):
                params = inspect.signature(fn).parameters.values()
                kinds = [(_KINDS[p.kind], p.name) for p in params]
                assert kinds == _ref_signature(name), f"{cls.__name__}.{name}"
                checked.append(name)
    tree = ast.parse(SOURCE.read_text())
    cls = next(
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CupyBackend"
    )
    assert [b.id for b in cls.bases] == ["KernelBackend"]
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef) and _is_op(fn.name):
            assert _ast_signature(fn) == _ref_signature(fn.name), fn.name
            checked.append(fn.name)
    assert checked, "nothing overrides the reference"


@pytest.mark.gpu
def test_imported_backend_keeps_the_reference_signatures():
    if gpu_skip_reason():
        pytest.skip(f"GPU backend not usable: {gpu_skip_reason()}")
    gpu = gpunn.get_backend("gpu")
    for name, ref in inspect.getmembers(NumpyBackend, inspect.isfunction):
        ours = getattr(type(gpu), name)
        assert inspect.signature(ours) == inspect.signature(ref), name


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
