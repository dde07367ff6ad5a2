"""The fused loss kernels (kernels/losses.cu) match the reference ops: softmax
cross-entropy on integer labels (int32 and int64; every combination of sample
weights, class weights, label smoothing, temperature and ignore_index) and on
probability rows, binary cross-entropy (sample weights, pos_weight (k,) or (1,),
label smoothing); batch sizes 0, 1, odd and larger than one grid; C from 1 to past
the one-warp-per-row limit; float32 / float64 against the float64 reference within
the README's reduction tolerance, float16 within its fp16 row; extreme and -inf
logits; bitwise reproducible; the reference's exception class on bad input.

Every option combination runs at small sizes; the large sizes (one grid and more,
both row paths) run with all options off and all on (the emulator is slow)."""

import itertools

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close

from gpunn.backends.gpu_losses import BLOCK, WARP_MAX_CLASSES
from gpunn.precision import bfloat16

CE = "softmax_cross_entropy"
BCE = "binary_cross_entropy"
FP16_TOL = {np.dtype(np.float16): (1e-3, 1e-2)}  # (rtol, atol): the README's fp16 row
DTYPES = pytest.mark.parametrize("dtype", ["float32", "float64"])
CE_KEYS = ("sample_weight", "class_weight", "label_smoothing", "temperature")
CE_OPTIONS = [
    dict(zip(CE_KEYS, o))
    for o in itertools.product([False, True], [False, True], [0.0, 0.15], [1.0, 2.5])
]
CE_ALL = dict(zip(CE_KEYS, (True, True, 0.1, 1.5)))
BCE_OPTIONS = [
    {"sample_weight": s, "pos_weight": p, "label_smoothing": ls}
    for s, p, ls in itertools.product([False, True], [None, "k", "1"], [0.0, 0.2])
]
SMALL = [(0, 5), (1, 1), (1, 2), (7, 13)]


def _ids(options):
    return "-".join(f"{k[:2]}={v}" for k, v in options.items() if v) or "plain"


def large_shapes(backend):
    """More rows than one grid holds on the one-warp path (C small, C at the limit)
    and on the one-block path (C past the limit)."""
    blocks = backend.kernels.max_blocks
    return [
        (blocks * (BLOCK // 32) + 3, 3),
        (3, WARP_MAX_CLASSES),
        (blocks + 2, WARP_MAX_CLASSES + 1),
    ]


def ce_inputs(rng, shape, dtype, options, ignore=None, rows=False):
    """Logits, targets and the op's keyword arguments (arrays of ``dtype``)."""
    n, c = shape
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    if rows:
        y = rng.dirichlet(np.ones(c), n).astype(dtype) if n else np.zeros(shape, dtype)
    else:
        y = rng.integers(0, c, n)
        if ignore is not None:
            y[rng.random(n) < 0.3] = ignore
    kwargs = {k: options[k] for k in ("label_smoothing", "temperature")}
    if options["sample_weight"]:
        kwargs["sample_weight"] = rng.uniform(0, 2, n).astype(dtype)
    if options["class_weight"]:
        kwargs["class_weight"] = rng.uniform(0.2, 2, c).astype(dtype)
    if ignore is not None:
        kwargs["ignore_index"] = ignore
    return z, y, kwargs


def bce_inputs(rng, shape, dtype, options):
    z = (rng.standard_normal(shape) * 4).astype(dtype)
    t = rng.random(shape).astype(dtype)
    kwargs = {"label_smoothing": options["label_smoothing"]}
    if options["sample_weight"]:
        kwargs["sample_weight"] = rng.uniform(0, 2, shape[0]).astype(dtype)
    if options["pos_weight"]:
        size = shape[1] if options["pos_weight"] == "k" else 1
        kwargs["pos_weight"] = rng.uniform(0.2, 3, size).astype(dtype)
    return z, t, kwargs


def on(backend, kwargs):
    return {
        k: backend.asarray(v) if isinstance(v, np.ndarray) else v
        for k, v in kwargs.items()
    }


def check(kb, reference, op, z, y, kwargs, tol=REDUCTION_TOL):
    """``op`` on the kernel backend against the float64 reference of the same
    (rounded) inputs; returns the kernel's loss and gradient on the host."""
    dtype = z.dtype
    to64 = {
        k: v.astype(np.float64) if isinstance(v, np.ndarray) else v
        for k, v in kwargs.items()
    }
    y64 = y.astype(np.float64) if y.dtype == dtype else y
    with np.errstate(divide="ignore"):  # the reference's 1 / sum(w) at batch 0
        expected = getattr(reference, op)(z.astype(np.float64), y64, **to64)
    loss, grad = getattr(kb, op)(kb.asarray(z), kb.asarray(y), **on(kb, kwargs))
    loss, grad = kb.to_numpy(loss), kb.to_numpy(grad)
    assert loss.shape == () and loss.dtype == dtype
    assert grad.shape == z.shape and grad.dtype == dtype
    assert_close(loss, expected[0], dtype, tol)
    assert_close(grad, expected[1], dtype, tol)
    return loss, grad


@pytest.mark.parametrize("ignore", [None, -100, 1], ids=str)
@pytest.mark.parametrize("options", CE_OPTIONS, ids=_ids)
@DTYPES
def test_cross_entropy_labels_every_option(
    kernel_backend, reference, dtype, options, ignore
):
    rng = np.random.default_rng(0)
    for i, shape in enumerate(SMALL):
        z, y, kwargs = ce_inputs(rng, shape, dtype, options, ignore)
        y = y.astype(np.int32 if i % 2 else np.int64)  # both label types
        check(kernel_backend, reference, CE, z, y, kwargs)


@pytest.mark.parametrize("options", CE_OPTIONS, ids=_ids)
@DTYPES
def test_cross_entropy_rows_every_option(kernel_backend, reference, dtype, options):
    rng = np.random.default_rng(1)
    for shape in SMALL:
        z, y, kwargs = ce_inputs(rng, shape, dtype, options, rows=True)
        check(kernel_backend, reference, CE, z, y, kwargs)


@pytest.mark.parametrize("options", BCE_OPTIONS, ids=_ids)
@DTYPES
def test_binary_cross_entropy_every_option(kernel_backend, reference, dtype, options):
    rng = np.random.default_rng(2)
    elements = kernel_backend.kernels.max_blocks * BLOCK
    for shape in [(0, 3), (1, 1), (7, 5), (elements // 3 + 5, 3)]:
        z, t, kwargs = bce_inputs(rng, shape, dtype, options)
        check(kernel_backend, reference, BCE, z, t, kwargs)


@pytest.mark.parametrize("everything", [False, True], ids=["plain", "all-options"])
@DTYPES
def test_cross_entropy_large_and_block_rows(
    kernel_backend, reference, dtype, everything
):
    rng = np.random.default_rng(3)
    options = CE_ALL if everything else CE_OPTIONS[0]
    for shape in large_shapes(kernel_backend):
        ignore = -100 if everything else None
        z, y, kwargs = ce_inputs(rng, shape, dtype, options, ignore)
        check(kernel_backend, reference, CE, z, y.astype(np.int32), kwargs)
        z, y, kwargs = ce_inputs(rng, shape, dtype, options, rows=True)
        check(kernel_backend, reference, CE, z, y, kwargs)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_16_bit_types_compute_in_float(kernel_backend, reference, half):
    """Every 16-bit instantiation: int32 and int64 labels (with the device statistics
    of class weights and ignore_index), probability rows, both row paths, BCE."""
    if half == "bfloat16":
        pytest.importorskip("ml_dtypes")
    f16 = np.dtype(np.float16) if half == "float16" else bfloat16()
    rng = np.random.default_rng(4)
    tol = FP16_TOL if half == "float16" else {f16: (8e-3, 3e-2)}
    for shape in [(9, 7), (3, WARP_MAX_CLASSES + 5)]:
        for labels in (np.int32, np.int64):
            z, y, kwargs = ce_inputs(rng, shape, f16, CE_ALL, -100)
            check(kernel_backend, reference, CE, z, y.astype(labels), kwargs, tol)
        z, y, kwargs = ce_inputs(rng, shape, f16, CE_ALL, rows=True)
        check(kernel_backend, reference, CE, z, y, kwargs, tol)
        z, t, kwargs = bce_inputs(rng, shape, f16, BCE_OPTIONS[-3])
        check(kernel_backend, reference, BCE, z, t, kwargs, tol)


@pytest.mark.parametrize("scale", [100.0, 1e4])
@DTYPES
def test_extreme_and_minus_inf_logits(kernel_backend, reference, dtype, scale):
    rng = np.random.default_rng(5)
    options = {**CE_ALL, "label_smoothing": 0.0}  # smoothing puts mass on -inf
    for c in (5, WARP_MAX_CLASSES + 3):
        z, y, kwargs = ce_inputs(rng, (6, c), dtype, options, -100)
        z = (rng.standard_normal((6, c)) * scale).astype(dtype)
        z[0, :2] = [scale, -scale]  # one huge row
        y[:3] = [0, 1, -100]
        z[1, 0] = z[2, 1] = -np.inf  # -inf logits without target mass
        loss, grad = check(kernel_backend, reference, CE, z, y, kwargs)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        rows = np.abs(rng.standard_normal((6, c))) * (z > -np.inf)
        rows = (rows / rows.sum(axis=1, keepdims=True)).astype(dtype)
        del kwargs["ignore_index"]
        loss, grad = check(kernel_backend, reference, CE, z, rows, kwargs)
        assert np.isfinite(loss) and np.isfinite(grad).all()
    z = np.array([[scale, -scale, 0.0], [-scale, 0.0, scale]], dtype)
    t = np.array([[1, 0, 1], [0, 1, 0]], dtype)
    for kwargs in ({}, {"pos_weight": np.array([2.0], dtype), "label_smoothing": 0.1}):
        check(kernel_backend, reference, BCE, z, t, kwargs)


def test_minus_inf_with_smoothing_is_infinite_like_the_reference(kernel_backend):
    k = kernel_backend
    z, y = k.asarray(np.array([[0.0, -np.inf, 1.0]])), k.asarray(np.array([0]))
    loss, grad = k.softmax_cross_entropy(z, y, label_smoothing=0.1)
    assert float(loss) == np.inf and np.isfinite(k.to_numpy(grad)).all()


def test_all_ignored_batch_gives_zero(kernel_backend):
    k = kernel_backend
    z = k.asarray(np.random.default_rng(6).standard_normal((4, 3)))
    y = k.asarray(np.full(4, -100, np.int32))
    for cw in (None, k.asarray(np.ones(3))):
        loss, grad = k.softmax_cross_entropy(
            z, y, class_weight=cw, label_smoothing=0.1, ignore_index=-100
        )
        assert float(loss) == 0 and not k.to_numpy(grad).any()


def test_labels_out_of_range_give_nan(kernel_backend):
    """The caller checks labels once per dataset; the kernel never reads outside
    the row and marks the row NaN (every row, through D, with class weights)."""
    k = kernel_backend
    z = k.asarray(np.zeros((3, 4), np.float32))
    for labels in ([0, 4, 1], [0, -1, 1]):
        y = k.asarray(np.array(labels, np.int32))
        for cw in (None, k.asarray(np.ones(4, np.float32))):
            loss, grad = k.softmax_cross_entropy(z, y, class_weight=cw)
            grad = k.to_numpy(grad)
            assert np.isnan(float(loss)) and np.isnan(grad[1]).all()
            assert cw is not None or not np.isnan(grad[0]).any()  # else D is NaN


def test_two_calls_are_bitwise_equal(kernel_backend):
    k, rng = kernel_backend, np.random.default_rng(7)
    for shape in large_shapes(k):
        for rows in (False, True):
            ignore = None if rows else -100
            z, y, kwargs = ce_inputs(rng, shape, np.float32, CE_ALL, ignore, rows)
            args, device = [k.asarray(z), k.asarray(y)], on(k, kwargs)
            first, second = (k.softmax_cross_entropy(*args, **device) for _ in "12")
            for a, b in zip(first, second):
                assert k.to_numpy(a).tobytes() == k.to_numpy(b).tobytes()
    z, t, kwargs = bce_inputs(rng, (k.kernels.max_blocks, 300), "f4", BCE_OPTIONS[-1])
    args, device = [k.asarray(z), k.asarray(t)], on(k, kwargs)
    first, second = (k.binary_cross_entropy(*args, **device) for _ in "12")
    for a, b in zip(first, second):
        assert k.to_numpy(a).tobytes() == k.to_numpy(b).tobytes()


def test_kernels_run_and_other_inputs_run_the_reference(kernel_backend, monkeypatch):
    k, launched = kernel_backend, []
    launch = k.kernels.launch_grid

    def spy(filename, name, *args):
        launched.append(name)
        return launch(filename, name, *args)

    monkeypatch.setattr(k.kernels, "launch_grid", spy)
    z = k.asarray(np.random.default_rng(8).standard_normal((4, 6)).astype("f4"))
    k.softmax_cross_entropy(z, k.asarray(np.arange(4, dtype=np.int32)))
    k.softmax_cross_entropy(z, k.asarray(np.arange(4)), ignore_index=0)
    k.binary_cross_entropy(z, k.asarray(np.ones((4, 6), "f4")))
    assert launched == [
        "ce_labels<float, int, false>",
        "sum_terms<float>",
        "ce_stats<float, long long>",
        "ce_labels<float, long long, false>",
        "sum_terms<float>",
        "bce<float>",
        "sum_terms<float>",
    ]
    launched.clear()
    k.softmax_cross_entropy(z, k.asarray(np.arange(4, dtype=np.int16)))
    k.softmax_cross_entropy(k.asarray(np.ones((6, 4), "f4")).T, k.asarray(np.arange(4)))
    assert launched == []


F4, I4 = np.float32, np.int32
BAD = [
    (CE, (np.zeros((3, 4)), np.zeros(2, np.int64)), {}),
    (CE, (np.zeros((3, 4)), np.zeros(3)), {}),
    (CE, (np.zeros((3, 4)), np.zeros((3, 4), F4)), {}),
    (CE, (np.zeros((3, 4)), np.zeros(3, I4)), {"sample_weight": np.ones(2)}),
    (CE, (np.zeros((3, 4)), np.zeros(3, I4)), {"class_weight": np.ones(4, F4)}),
    (CE, (np.zeros((3, 4)), np.full((3, 4), 0.25)), {"ignore_index": -100}),
    (CE, (np.zeros((3, 4)), np.zeros(3, I4)), {"ignore_index": 1.5}),
    (CE, (np.zeros(4), np.zeros(4, I4)), {}),
    (BCE, (np.zeros((3, 4)), np.zeros((3, 3))), {}),
    (BCE, (np.zeros((3, 4)), np.zeros((3, 4))), {"pos_weight": np.ones(2)}),
    (BCE, (np.zeros((3, 4)), np.zeros((3, 4))), {"sample_weight": np.ones(3, F4)}),
    (BCE, (np.zeros(4), np.zeros(4)), {}),
]


@pytest.mark.parametrize("op, args, kwargs", BAD, ids=range(len(BAD)))
def test_bad_input_raises_like_the_reference(
    kernel_backend, reference, op, args, kwargs
):
    with pytest.raises(Exception) as expected:
        getattr(reference, op)(*args, **kwargs)
    k = kernel_backend
    with pytest.raises(expected.type):
        getattr(k, op)(*[k.asarray(a) for a in args], **on(k, kwargs))
