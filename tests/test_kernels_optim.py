"""The fused optimizer kernels match the reference updates.

The hyperparameters each update receives are recorded from real optimizers stepping
on the reference backend (so they are exactly what training passes, bias
corrections and schedules included), then replayed on random arenas on both the
reference and a kernel backend, three steps with the state carried. Arena sizes 0, 1,
odd and larger than one grid; float32 and float64; every option.
"""

import numpy as np
import pytest
from conftest import assert_close

import gpunn
from gpunn.backends import NumpyBackend
from gpunn.layers import Dense
from gpunn.precision import bfloat16

UPDATES = (
    "sgd_update_",
    "adam_update_",
    "nadam_update_",
    "rmsprop_update_",
    "adagrad_update_",
    "adadelta_update_",
    "adamax_update_",
)
CASES = {
    "sgd": {"lr": 0.1},
    "sgd-momentum": {"lr": 0.1, "momentum": 0.9, "dampening": 0.2},
    "sgd-nesterov-wd-max": {
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.01,
        "maximize": True,
    },
    "adam": {"lr": 1e-2},
    "adam-amsgrad-wd-max": {
        "lr": 1e-2,
        "amsgrad": True,
        "weight_decay": 0.1,
        "maximize": True,
    },
    "adamw": {"lr": 1e-2, "weight_decay": 0.1},
    "adamw-beta1-0.3": {"lr": 1e-2, "betas": (0.3, 0.9)},
    "nadam": {"lr": 1e-2},
    "nadam-decoupled": {
        "lr": 1e-2,
        "weight_decay": 0.1,
        "decoupled_weight_decay": True,
    },
    "rmsprop": {"lr": 1e-2},
    "rmsprop-centered-momentum-wd": {
        "lr": 1e-2,
        "centered": True,
        "momentum": 0.5,
        "weight_decay": 0.01,
    },
    "adagrad": {"lr": 1e-2, "lr_decay": 0.1},
    "adagrad-wd-max": {"lr": 1e-2, "weight_decay": 0.1, "maximize": True},
    "adadelta": {"lr": 1.0},
    "adadelta-wd": {"lr": 1.0, "weight_decay": 0.1, "rho": 0.5},
    "adamax": {"lr": 1e-2},
    "adamax-wd-max": {"lr": 1e-2, "weight_decay": 0.1, "maximize": True},
}


class _Recorder(NumpyBackend):
    """The reference backend, recording the keywords of every update it runs."""

    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in UPDATES:
            calls = super().__getattribute__("calls")

            def record(*arrays, **hyper):
                absent = tuple(i for i, a in enumerate(arrays) if a is None)
                replay = {k: v for k, v in hyper.items() if k != "param_copy"}
                calls.append((name, len(arrays), absent, replay))
                return attr(*arrays, **hyper)

            return record
        return attr


def _recorded(case: str, steps: int = 3):
    """``[(op, number of arrays, indices of None arrays, hyper)]`` of ``steps``
    real steps of the case."""
    name = case.split("-")[0]
    backend = _Recorder()
    model = gpunn.Sequential([Dense(3)], input_dim=2, backend=backend, seed=0)
    model.compile("mse", gpunn.optim.get(name, **CASES[case]), metrics=[])
    rng = np.random.default_rng(0)
    for _ in range(steps):
        model.train_step(rng.standard_normal((4, 2)), rng.standard_normal((4, 3)))
    return backend.calls


def _arenas(xp_from, n, count, dtype, seed=1):
    """Random params and gradients, zero state (as an optimizer starts)."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(n).astype(dtype) for _ in range(2)]
    arrays += [np.zeros(n, dtype) for _ in range(count - 2)]  # fresh state
    return [xp_from(a) for a in arrays]


def test_every_fused_update_is_covered():
    assert {_recorded(case)[0][0] for case in CASES} == set(UPDATES)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [0, 1, 37, 3 * 256 * 3 + 11])
@pytest.mark.parametrize("case", sorted(CASES))
def test_update_matches_the_reference(kernel_backend, reference, case, n, dtype):
    calls = _recorded(case)
    assert calls, f"{case} ran no recorded update"
    _, count, absent, _ = calls[0]
    ours = _arenas(kernel_backend.asarray, n, count, dtype)
    ref = _arenas(reference.asarray, n, count, dtype)
    for i in absent:
        ours[i] = ref[i] = None
    for name, _, _, hyper in calls:
        getattr(kernel_backend, name)(*ours, **hyper)
        getattr(reference, name)(*ref, **hyper)
    for a, b in zip(ours, ref):
        if a is None:
            continue
        a = kernel_backend.to_numpy(a)
        assert a.dtype == b.dtype
        assert_close(a, b.astype(np.float64), dtype)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", ["sgd-momentum", "adam-amsgrad-wd-max", "nadam"])
def test_an_update_writes_the_16_bit_copy_in_the_same_pass(
    kernel_backend, reference, case, half
):
    """Mixed precision: the float32 masters step exactly as without a copy, and the
    copy holds them rounded to the 16-bit type, on the reference and the kernels."""
    if half == "bfloat16":
        pytest.importorskip("ml_dtypes")
    half = np.dtype(np.float16) if half == "float16" else bfloat16()
    calls = _recorded(case)
    _, count, absent, _ = calls[0]
    n = 3 * 256 * 3 + 11
    for backend in (reference, kernel_backend):
        plain = _arenas(backend.asarray, n, count, np.float32)
        mixed = _arenas(backend.asarray, n, count, np.float32)
        for i in absent:
            plain[i] = mixed[i] = None
        copy = backend.zeros(n, half)
        for name, _, _, hyper in calls:
            getattr(backend, name)(*plain, **hyper)
            getattr(backend, name)(*mixed, param_copy=copy, **hyper)
        params = backend.to_numpy(mixed[0])
        np.testing.assert_array_equal(params, backend.to_numpy(plain[0]))
        np.testing.assert_array_equal(
            backend.to_numpy(copy).astype(np.float32),
            params.astype(half).astype(np.float32),
        )


def test_a_bad_16_bit_copy_is_refused_before_anything_is_written(kernel_backend):
    param, grad = (kernel_backend.asarray(np.ones(5, np.float32)) for _ in range(2))
    hyper = {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False}
    hyper.update(weight_decay=0.0, maximize=False, first_step=True)
    for bad, match in [
        (np.zeros(5, np.float32), "float16 or bfloat16"),
        (np.zeros(4, np.float16), "shape"),
    ]:
        with pytest.raises(ValueError, match=match):
            kernel_backend.sgd_update_(
                param, grad, None, param_copy=kernel_backend.asarray(bad), **hyper
            )
        np.testing.assert_array_equal(kernel_backend.to_numpy(param), np.ones(5))
