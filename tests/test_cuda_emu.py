"""The CPU emulator of the CUDA kernels (tests/cuda_emu) is right, so the kernel
parity tests that run on it in CI mean something: grid-stride loops, block and warp
reductions, shuffles and atomics agree with NumPy; misuse fails loudly."""

from pathlib import Path

import numpy as np
import pytest
from cuda_emu import emulator

pytestmark = pytest.mark.skipif(
    not emulator.available(), reason="no g++ for the emulator"
)

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
SELFTEST = Path(__file__).with_name("cuda_emu") / "selftest.cu"


@pytest.fixture(scope="module")
def selftest():
    return emulator.load(SELFTEST, KERNELS)


@pytest.mark.parametrize("dtype, ctype", [("float32", "float"), ("float64", "double")])
@pytest.mark.parametrize("n", [0, 1, 31, 33, 5000])
@pytest.mark.parametrize("block", [32, 128, 1024])
def test_block_reduction_over_a_grid_stride_loop(selftest, n, block, dtype, ctype):
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    grid = 3
    out = np.zeros(grid, dtype)
    fn = selftest.get_function(f"block_partials<{ctype}>")
    fn((grid,), (block,), (x, out, np.int64(n)))
    np.testing.assert_allclose(out.sum(), x.sum(dtype=np.float64), rtol=1e-5, atol=1e-5)
    # block b saw the elements b*block + k*grid*block + t
    index = np.arange(n)
    for b in range(grid):
        mine = x[(index // block) % grid == b]
        np.testing.assert_allclose(
            out[b], mine.sum(dtype=np.float64), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("rows, cols", [(1, 1), (7, 33), (50, 300)])
def test_warp_per_row_maximum(selftest, rows, cols):
    x = np.random.default_rng(0).standard_normal((rows, cols))
    out = np.zeros(rows)
    selftest.get_function("row_max<double>")(
        (2,), (64,), (x, out, np.int64(rows), np.int64(cols))
    )
    np.testing.assert_array_equal(out, x.max(axis=1))


def test_every_thread_runs_once(selftest):
    counter = np.zeros(1, np.int32)
    selftest.get_function("count_threads")((5,), (96,), (counter,))
    assert counter[0] == 5 * 96


def test_shuffles_follow_cuda_lane_rules(selftest):
    out = np.zeros(96, np.int32)
    selftest.get_function("shuffles")((1,), (64,), (out,))
    lane = np.arange(32)
    np.testing.assert_array_equal(out[:32], np.where(lane + 3 < 32, lane + 3, lane))
    np.testing.assert_array_equal(out[32:64], np.where(lane >= 5, lane - 5, lane))
    np.testing.assert_array_equal(out[64:], np.full(32, 70))


def test_a_barrier_some_threads_skip_fails_the_launch(selftest):
    with pytest.raises(RuntimeError, match="__syncthreads"):
        selftest.get_function("divergent_barrier")(
            (1,), (64,), (np.zeros(64, np.float32),)
        )


def test_misuse_is_refused(selftest):
    fn = selftest.get_function("block_partials<float>")
    x, out = np.ones(4, np.float32), np.zeros(1, np.float32)
    with pytest.raises(TypeError, match="cast it"):
        fn((1,), (32,), (x, out, 4))
    with pytest.raises(RuntimeError, match="multiple of 32"):
        fn((1,), (48,), (x, out, np.int64(4)))
    with pytest.raises(KeyError):
        selftest.get_function("nope<float>")
    fn((0,), (32,), (x, out, np.int64(4)))  # an empty grid runs nothing
    assert out[0] == 0


@pytest.mark.parametrize("dtype, name", [("float32", "float"), ("float64", "double")])
def test_the_shipped_scale_kernel_runs(dtype, name):
    module = emulator.load(KERNELS / "scale.cu", KERNELS)
    x = np.arange(1001, dtype=dtype)
    module.get_function(f"scale_<{name}>")(
        (3,), (256,), (x, np.dtype(dtype).type(3), np.int64(1001))
    )
    np.testing.assert_array_equal(x, 3 * np.arange(1001, dtype=dtype))


def test_half_kernels_compute_in_float():
    module = emulator.load(KERNELS / "scale.cu", KERNELS, ("GPUNN_HALF",))
    x = np.linspace(-2, 2, 77).astype(np.float16)
    expected = (x.astype(np.float32) * np.float32(1.5)).astype(np.float16)
    module.get_function("scale_<__half>")(
        (2,), (32,), (x, np.float32(1.5), np.int64(77))
    )
    np.testing.assert_array_equal(x, expected)
