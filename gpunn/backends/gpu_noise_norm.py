"""Kernel-backed ops: counter-based dropout (``kernels/dropout.cu``, float16, bfloat16,
float32, float64) and batch normalization (``kernels/batchnorm.cu``: float32/64, and
float16/bfloat16 data with float32 statistics for mixed precision).

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`). An input the
kernels do not take (another dtype, a non-contiguous view, mismatched shapes, an empty
or one-row batch-norm batch, a dropout generator that is not a
:class:`~gpunn.backends.philox.CounterRNG`) runs the reference op, which also raises
the reference's errors.

Dropout's mask is the reference's, bit for bit: the kernel draws the same Philox words
(:mod:`gpunn.backends.philox`) and compares them with the same integer threshold. What
backward needs is kept as packed bits (1 bit per element, 1/32 of a float32
activation), not regenerated from ``(key, counter)``. Reasoning, not measurement:
Philox4x64-10 takes 10 rounds of two 64x64->128-bit products per 4 elements, and a
GPU builds each from several 32-bit multiply-adds, so the forward kernel's integer
work is of the order of its memory time (8 bytes per float32 element) even on an
H100; regenerating in backward would pay it again, while reading the bits adds 1/64
to the bytes backward moves anyway. Forward writes the bits with coalesced stores
(8 threads OR their 4-bit nibbles into one word by warp shuffles).

Batch normalization sums its column statistics in double, per block of rows, and
adds the blocks in a fixed order (no atomics): the same input gives the same bits.
The variance is the mean of ``(x - mean)^2`` (two passes, as the reference), not
``E[x^2] - mean^2``, so a large mean does not cancel the variance away; the double
mean is kept as two words of the dtype, so ``x - mean`` stays exact near the mean of a
float32 input with a large offset.
"""

from __future__ import annotations

import numpy as np

from gpunn.backends.kernels import BLOCK, ctype, kernel_dtype, scalar, stats_dtype
from gpunn.backends.philox import CounterRNG, DropoutMask, dropout_threshold

DROPOUT = "dropout.cu"
BATCHNORM = "batchnorm.cu"
ROWS_PER_CHUNK = 64  # rows a block's column pass takes at least, before splitting


def _bn_fits(x, *columns) -> bool:
    """Whether the batch-norm kernels take ``x`` (a non-empty contiguous matrix of a
    kernel dtype) and ``columns`` (None, or contiguous ``(features,)`` arrays of its
    statistics dtype: float32 for 16-bit data, else x's)."""
    if not (x.ndim == 2 and x.size > 0 and kernel_dtype(x.dtype)):
        return False
    s = stats_dtype(x.dtype)
    return x.flags.c_contiguous and all(
        a is None
        or (a.shape == (x.shape[1],) and a.dtype == s and a.flags.c_contiguous)
        for a in columns
    )


def _names(dtype) -> tuple[str, str]:
    """The C types ``(T, S)`` of data and statistics for ``dtype`` data."""
    return ctype(dtype), ctype(stats_dtype(dtype))


class GpuNoiseNormOps:
    """Overrides of the reference dropout and batch-norm ops that run kernels."""

    # ---------------------------------------------------------------- dropout
    def dropout(self, x, rate: float, generator):
        fits = kernel_dtype(x.dtype) and x.flags.c_contiguous
        if not (fits and isinstance(generator, CounterRNG)):
            return super().dropout(x, rate, generator)
        threshold = dropout_threshold(rate)  # raises before the stream moves
        n, scale = x.size, 1 / (1 - rate)
        start = generator.take(n)
        y = self.xp.empty_like(x)
        bits = self.xp.empty(-(-n // 32), dtype=self.xp.uint32)
        args = (x, y, bits, np.int64(n), *generator.key_words())
        args += (*CounterRNG.counter_words(start), threshold, _scale(x.dtype, scale))
        name = f"dropout_forward<{ctype(x.dtype)}>"
        self.kernels.launch(DROPOUT, name, -(-n // 4), args)
        return y, DropoutMask(tuple(x.shape), scale, bits=bits)

    def backprop_dropout(self, dy, mask):
        if mask.bits is None or not kernel_dtype(dy.dtype):
            return super().backprop_dropout(dy, mask)
        mask.check(dy)
        dy = self.xp.ascontiguousarray(dy)
        dx = self.xp.empty_like(dy)
        args = (dy, mask.bits, dx, np.int64(dy.size), _scale(dy.dtype, mask.scale))
        name = f"dropout_backward<{ctype(dy.dtype)}>"
        self.kernels.launch(DROPOUT, name, dy.size, args)
        return dx

    # ---------------------------------------------------------------- batch norm
    def batch_norm_train_(
        self, x, gamma, beta, running_mean, running_var, momentum: float, eps: float
    ):
        affine = gamma is not None
        fits = _bn_fits(x, gamma, beta, running_mean, running_var)
        if not fits or x.shape[0] < 2 or affine != (beta is not None):
            return super().batch_norm_train_(
                x, gamma, beta, running_mean, running_var, momentum, eps
            )
        rows, cols = x.shape
        t, c = _names(x.dtype)
        stats = stats_dtype(x.dtype)
        name = f"bn_stats_partials<{t}>"
        partials, chunks = self._bn_columns(name, (x,), (np.int32(0),))
        self._bn_columns(name, (x,), (np.int32(1),), partials)  # needs pass 0
        mean, inv_std = self.xp.empty(2 * cols, stats), self.xp.empty(cols, stats)
        args = (partials, np.int64(chunks), np.int64(rows), np.int64(cols))
        args += (np.float64(eps), mean, inv_std, running_mean, running_var)
        args += tuple(scalar(stats, v) for v in (1 - momentum, momentum))
        args += (scalar(stats, rows / (rows - 1)),)
        self.kernels.launch(BATCHNORM, f"bn_stats_finalize<{c}>", cols, args)
        x_hat = self.xp.empty(x.shape, stats)
        y = x_hat if stats == x.dtype and not affine else self.xp.empty_like(x)
        args = (x, mean, inv_std, gamma if affine else mean, beta if affine else mean)
        args += (x_hat, y, np.int64(x.size), np.int64(cols), np.int32(affine))
        self.kernels.launch(BATCHNORM, f"bn_normalize<{t}, {c}>", x.size, args)
        return y, x_hat, inv_std

    def batch_norm_eval(self, x, gamma, beta, running_mean, running_var, eps: float):
        if not _bn_fits(x, gamma, beta, running_mean, running_var):
            return super().batch_norm_eval(
                x, gamma, beta, running_mean, running_var, eps
            )
        y = self.xp.empty_like(x)
        g = running_var if gamma is None else gamma
        b = running_var if beta is None else beta
        args = (x, running_mean, running_var, g, b, y, np.int64(x.size))
        args += (np.int64(x.shape[1]), scalar(x.dtype, eps))
        args += (np.int32(gamma is not None), np.int32(beta is not None))
        t, c = _names(x.dtype)
        self.kernels.launch(BATCHNORM, f"bn_eval<{t}, {c}>", x.size, args)
        return y

    def backprop_batch_norm_(
        self, dy, x_hat, inv_std, gamma, dgamma, dbeta, need_dx=True
    ):
        stats = stats_dtype(dy.dtype)
        fits = _bn_fits(dy, inv_std, gamma, dgamma, dbeta) and x_hat.flags.c_contiguous
        if not fits or x_hat.shape != dy.shape or x_hat.dtype != stats:
            return super().backprop_batch_norm_(
                dy, x_hat, inv_std, gamma, dgamma, dbeta, need_dx
            )
        if not need_dx and dgamma is None and dbeta is None:
            return None
        rows, cols = dy.shape
        t, c = _names(dy.dtype)
        name = f"bn_backward_partials<{t}, {c}>"
        partials, chunks = self._bn_columns(name, (dy, x_hat))
        sums = self.xp.empty(2 * cols, stats)
        args = (partials, np.int64(chunks), np.int64(cols), sums)
        args += (sums if dgamma is None else dgamma, sums if dbeta is None else dbeta)
        args += (np.int32(dgamma is not None), np.int32(dbeta is not None))
        self.kernels.launch(BATCHNORM, f"bn_backward_finalize<{c}>", cols, args)
        if not need_dx:
            return None
        dx = self.xp.empty_like(dy)
        args = (dy, x_hat, inv_std, inv_std if gamma is None else gamma, sums, dx)
        args += (np.int64(dy.size), np.int64(cols), scalar(stats, -1 / rows))
        args += (np.int32(gamma is not None),)
        self.kernels.launch(BATCHNORM, f"bn_backward_dx<{t}, {c}>", dy.size, args)
        return dx

    def _bn_columns(self, name: str, head, tail=(), partials=None):
        """Launches the column pass ``name`` (see batchnorm.cu) over the ``(rows,
        cols)`` matrix ``head[0]`` with args ``head + (partials, rows, cols, chunks)
        + tail``, into ``partials`` (two planes of float64; new when None). Returns
        ``(partials, chunks)``. The split depends only on the shape and
        ``max_blocks``, so every sum's order is fixed."""
        rows, cols = head[0].shape
        tiles, most = -(-cols // 32), self.kernels.max_blocks
        chunks = max(1, min(-(-rows // ROWS_PER_CHUNK), most // tiles))
        grid = chunks * min(tiles, max(1, most // chunks))
        if partials is None:
            partials = self.xp.empty(2 * chunks * cols, dtype=np.float64)
        sizes = (np.int64(rows), np.int64(cols), np.int64(chunks))
        self.kernels.launch_grid(
            BATCHNORM, name, grid, BLOCK, (*head, partials, *sizes, *tail)
        )
        return partials, chunks


def _scale(dtype, scale: float):
    """``scale`` rounded once to the dtype the reference's mask multiplies in: the
    array's for float32/64, float32 for the 16-bit types (the reference computes
    those in float32), as the kernel's accumulate type."""
    return scalar(dtype, stats_dtype(dtype).type(scale))
