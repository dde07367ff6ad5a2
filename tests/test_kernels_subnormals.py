"""float32 subnormals (|x| < 1.18e-38) survive gpunn's kernels as they survive the
NumPy reference, bit for bit: the kernels are compiled with ``-ftz=false``
(gpunn.backends.kernel_cache). In CI the emulator runs them; the ``gpu`` half is the
proof on a device. CuPy's own elementwise kernels are compiled with ``-ftz=true``; the
last test records that difference on a GPU, as the README states it."""

import numpy as np
import pytest
from conftest import gpu_skip_reason

TINY = np.finfo(np.float32).smallest_normal  # 1.18e-38
SUBNORMALS = np.array([TINY / 2, -TINY / 4, 3e-45, -1e-40, TINY / 1024], np.float32)


def _bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


@pytest.mark.parametrize(
    "op, args",
    [
        ("relu", ()),
        ("leaky_relu", (0.5,)),
        ("elu", (1.0,)),
        ("tanh", ()),
    ],
)
def test_activations_keep_subnormals(kernel_backend, reference, op, args):
    x = np.concatenate([SUBNORMALS, -SUBNORMALS])
    ours = kernel_backend.to_numpy(
        getattr(kernel_backend, op)(kernel_backend.asarray(x), *args)
    )
    expected = getattr(reference, op)(x, *args)
    assert (_bits(expected)[: len(SUBNORMALS)] != 0).any()  # the reference keeps them
    np.testing.assert_array_equal(_bits(ours), _bits(expected))


def test_backprop_keeps_subnormal_gradients(kernel_backend, reference):
    dy = np.concatenate([SUBNORMALS, SUBNORMALS])
    y = np.linspace(-1, 1, dy.size).astype(np.float32)
    k = kernel_backend
    ours = k.to_numpy(k.backprop_relu(k.asarray(dy), k.asarray(y)))
    np.testing.assert_array_equal(_bits(ours), _bits(reference.backprop_relu(dy, y)))


def test_an_sgd_step_keeps_subnormal_parameters(kernel_backend, reference):
    """``p - lr * g`` where both the step and the result are subnormal."""
    param = np.full(7, TINY, np.float32)
    grad = np.full(7, TINY, np.float32)
    hyper = {
        "lr": 0.5,
        "momentum": 0.0,
        "dampening": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
        "maximize": False,
        "first_step": True,
    }
    expected = param.copy()
    reference.sgd_update_(expected, grad.copy(), None, **hyper)
    assert 0 < expected[0] < TINY  # subnormal
    p = kernel_backend.asarray(param)
    kernel_backend.sgd_update_(p, kernel_backend.asarray(grad), None, **hyper)
    np.testing.assert_array_equal(_bits(kernel_backend.to_numpy(p)), _bits(expected))


@pytest.mark.gpu
def test_cupys_own_elementwise_kernels_flush_float32_subnormals():
    """What the README says of ops without a gpunn kernel: CuPy compiles its
    elementwise kernels with ``-ftz=true``, so there a float32 subnormal becomes 0
    (float64 keeps them)."""
    if gpu_skip_reason():
        pytest.skip(f"GPU backend not usable: {gpu_skip_reason()}")
    import cupy

    x = cupy.asarray(SUBNORMALS)
    assert not cupy.asnumpy(x * np.float32(1)).any()
    x64 = cupy.asarray(SUBNORMALS.astype(np.float64))
    np.testing.assert_array_equal(cupy.asnumpy(x64 * 1.0), SUBNORMALS)
