"""Shared fixtures: every numeric test runs once per backend through ``backend``."""

import os

# Correctness tests run without TF32 (set before CuPy can be imported).
os.environ["NVIDIA_TF32_OVERRIDE"] = "0"
os.environ.pop("CUPY_TF32", None)
os.environ.pop("GPUNN_BACKEND", None)

import numpy as np
import pytest

from gpunn.backends import get_backend, gpu_status


def gpu_skip_reason():
    """None when the GPU backend is usable, else why not."""
    cls, reason = gpu_status()
    return None if cls is not None else reason


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request):
    """The NumPy backend, and the CuPy backend when a GPU is usable."""
    if request.param == "gpu" and gpu_skip_reason():
        pytest.skip(f"GPU backend not usable: {gpu_skip_reason()}")
    return get_backend(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# the README's tolerances, (rtol, atol) by dtype.
ELEMENTWISE_TOL = {
    np.dtype("float32"): (1e-5, 1.3e-6),
    np.dtype("float64"): (1e-7, 1e-7),
}
REDUCTION_TOL = {np.dtype("float32"): (1e-5, 1e-5), np.dtype("float64"): (1e-7, 1e-7)}


def assert_close(actual, expected, dtype, tol=ELEMENTWISE_TOL):
    rtol, atol = tol[np.dtype(dtype)]
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol
    )


@pytest.fixture(params=["emulated", pytest.param("gpu", marks=pytest.mark.gpu)])
def kernel_backend(request):
    """A backend running gpunn's CUDA kernels: on the CPU through the emulator
    (``tests/kernel_backends.py``), and on the GPU when one is usable."""
    from kernel_backends import kernel_backend_for

    return kernel_backend_for(request.param)


@pytest.fixture
def reference():
    """The NumPy reference backend the kernels are compared with."""
    return get_backend("cpu")
