"""The CPU emulator of the CUDA kernels (tests/cuda_emu) is right, so the kernel
parity tests that run on it in CI mean something: grid-stride loops, block and warp
reductions, shuffles and atomics agree with NumPy; misuse fails loudly."""

import re
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


def test_shuffles_and_votes_follow_cuda_lane_rules(selftest):
    out = np.zeros((8, 32), np.int32)
    selftest.get_function("shuffles")((2,), (64,), (out,))
    lane = np.arange(32)
    expected = [
        np.where(lane + 3 < 32, lane + 3, lane),  # down 3
        np.where(lane >= 5, lane - 5, lane),  # up 5
        np.full(32, 70),  # lane 7's lane * 10
        (lane & ~7) + 1,  # lane 9 % 8 of each 8 lanes
        lane ^ 5,  # xor within 16 lanes
        np.where(lane % 8 + 2 < 8, lane + 2, lane),  # down 2 within 8 lanes
        np.full(32, sum(1 << i for i in range(0, 32, 3))),  # ballot(lane % 3 == 0)
        np.full(32, 1),  # any(lane == 31) + 2 * all(lane < 31)
    ]
    np.testing.assert_array_equal(out, np.array(expected))


@pytest.mark.parametrize(
    "kernel, message",
    [
        ("divergent_barrier", "__syncthreads.* some threads of the block never reach"),
        ("split_barrier", "different __syncthreads"),
        ("divergent_shuffle", "warp primitive that some threads of the warp never"),
        ("mixed_warp_primitives", "different warp primitives"),
        ("partial_mask", "mask 0x0000ffff"),
    ],
)
def test_barrier_misuse_fails_the_launch(selftest, kernel, message):
    x = np.zeros(64, np.int32 if kernel == "partial_mask" else np.float32)
    with pytest.raises(RuntimeError, match=f"^{kernel}: .*{message}"):
        selftest.get_function(kernel)((2,), (64,), (x,))
    # the next launch starts clean
    counter = np.zeros(1, np.int32)
    selftest.get_function("count_threads")((2,), (64,), (counter,))
    assert counter[0] == 128


def test_misuse_is_refused(selftest):
    fn = selftest.get_function("block_partials<float>")
    x, out = np.ones(4, np.float32), np.zeros(1, np.float32)
    with pytest.raises(TypeError, match="cast it"):
        fn((1,), (32,), (x, out, 4))
    with pytest.raises(TypeError, match="cast it"):
        fn((1,), (32,), (x, out, 4.0))
    for block in (0, 48, 1056):
        with pytest.raises(RuntimeError, match="multiple of 32"):
            fn((1,), (block,), (x, out, np.int64(4)))
    with pytest.raises(ValueError, match="C-contiguous"):
        fn((1,), (32,), (np.ones(8, np.float32)[::2], out, np.int64(4)))
    with pytest.raises(ValueError, match="grid size"):
        fn((-1,), (32,), (x, out, np.int64(4)))
    with pytest.raises(ValueError, match="shared memory"):
        fn((1,), (32,), (x, out, np.int64(4)), shared_mem=128)
    with pytest.raises(KeyError):
        selftest.get_function("nope<float>")
    fn((0,), (32,), (x, out, np.int64(4)))  # an empty grid runs nothing
    assert out[0] == 0


def test_names_are_the_export_lines(selftest):
    exports = re.findall(r"^GPUNN_EXPORT\((.+)\)$", SELFTEST.read_text(), re.MULTILINE)
    assert sorted(selftest.names) == sorted(exports)


def test_a_build_error_shows_the_compiler_message(tmp_path):
    source = tmp_path / "broken.cu"
    source.write_text(
        '#include "common.cuh"\n__global__ void k(float* x) { x[0] = y; }\n'
    )
    with pytest.raises(
        RuntimeError, match="broken.cu failed:(.|\n)*y. was not declared"
    ):
        emulator.load(source, KERNELS)


@pytest.mark.parametrize("dtype, name", [("float32", "float"), ("float64", "double")])
def test_a_kernel_in_the_shipped_style_runs(dtype, name):
    module = emulator.load(ROOT / "tests" / "cuda_emu" / "scale.cu", KERNELS)
    x = np.arange(1001, dtype=dtype)
    module.get_function(f"scale_<{name}>")(
        (3,), (256,), (x, np.dtype(dtype).type(3), np.int64(1001))
    )
    np.testing.assert_array_equal(x, 3 * np.arange(1001, dtype=dtype))


def test_half_kernels_compute_in_float():
    module = emulator.load(
        ROOT / "tests" / "cuda_emu" / "scale.cu", KERNELS, ("GPUNN_HALF",)
    )
    x = np.linspace(-2, 2, 77).astype(np.float16)
    expected = (x.astype(np.float32) * np.float32(1.5)).astype(np.float16)
    module.get_function("scale_<__half>")(
        (2,), (32,), (x, np.float32(1.5), np.int64(77))
    )
    np.testing.assert_array_equal(x, expected)
