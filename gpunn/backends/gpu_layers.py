"""Kernel-backed ops: activation forward and derivative kernels, Swish with a
device beta, PReLU, and Dense fused with its activation (``kernels/activations.cu``),
float16, bfloat16, float32 and float64. With 16-bit data (mixed precision) the
parameters and gradients are float32 (the arena): Swish's beta, PReLU's slopes and
their gradients, Dense's weight and bias gradients.

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`). An input the
kernels do not take (another dtype, a non-contiguous view, mismatched shapes, an
unknown option) runs the reference op, which also raises the reference's errors; the
fused Dense ops check shapes and dtypes first, as the reference does. Identity and
softmax stay reference ops. Reductions (Swish's dbeta, PReLU's slope gradient, Dense's
bias gradient) write per-block partial sums that a second kernel adds in a fixed order:
no atomics, so the same input gives the same bits.
"""

from __future__ import annotations

import numbers

import numpy as np

from gpunn.backends import special
from gpunn.backends.kernels import BLOCK, ctype, kernel_dtype, scalar, stats_dtype
from gpunn.backends.ops_fused import check_dense, check_dense_grads, fused_op

FILE = "activations.cu"
# activation -> its index in activations.cu's enum Act
_ACT = {
    "relu": 0,
    "leaky_relu": 1,
    "elu": 2,
    "sigmoid": 3,
    "tanh": 4,
    "silu": 5,
    "gelu": 6,
    "gelu_tanh": 7,
    "identity": 8,
}
# the option each fused op's kernel takes, with the reference default
_OPTION = {"leaky_relu": ("negative_slope", 0.01), "elu": ("alpha", 1.0)}
ROWS_PER_CHUNK = 64  # rows a block's column pass takes at least, before splitting


def _fits(*arrays) -> bool:
    """Whether the kernels take these arrays: one float dtype, one shape, contiguous."""
    first = arrays[0]
    return kernel_dtype(first.dtype) and all(
        a.dtype == first.dtype and a.shape == first.shape and a.flags.c_contiguous
        for a in arrays
    )


def _acc(dtype):
    """The dtype of the kernels' partial sums: float32 for the 16-bit types."""
    return np.float64 if dtype == np.float64 else np.float32


def _kernel_act(op: str, options: dict):
    """``(kernel activation, p)`` for a fused op and its options, or None when an
    option is not one the kernel takes (the reference then raises)."""
    if op == "gelu":
        if set(options) - {"approximate"}:
            return None
        tanh = special.gelu_is_tanh(options.get("approximate", "none"))
        return ("gelu_tanh" if tanh else "gelu"), 0.0
    name, default = _OPTION.get(op, (None, 0.0))
    if set(options) - {name}:
        return None
    return op, options.get(name, default)


def _prelu_fits(x, weight) -> bool:
    """A ``(batch, n)`` input with one slope or ``n``, of x's dtype (float32 for
    16-bit x)."""
    return (
        x.ndim == 2
        and x.shape[1] > 0
        and weight.ndim == 1
        and weight.size in (1, x.shape[1])
        and _fits(x)
        and weight.dtype == stats_dtype(x.dtype)
        and weight.flags.c_contiguous
    )


class GpuLayerOps:
    """Overrides of the reference activation ops that run one kernel each."""

    def _act_forward(self, act: str, x, p=0.0):
        y = self.xp.empty_like(x)
        name = f"act_forward<{ctype(x.dtype)}, {_ACT[act]}>"
        args = (x, y, np.int64(x.size), scalar(x.dtype, p))
        self.kernels.launch(FILE, name, x.size, args)
        return y

    def _act_backward(self, act: str, dy, saved, p=0.0):
        dx = self.xp.empty_like(dy)
        name = f"act_backward<{ctype(dy.dtype)}, {_ACT[act]}>"
        args = (dy, saved, dx, np.int64(dy.size), scalar(dy.dtype, p))
        self.kernels.launch(FILE, name, dy.size, args)
        return dx

    def relu(self, x):
        return self._act_forward("relu", x) if _fits(x) else super().relu(x)

    def backprop_relu(self, dy, y):
        if not _fits(dy, y):
            return super().backprop_relu(dy, y)
        return self._act_backward("relu", dy, y)

    def leaky_relu(self, x, negative_slope=0.01):
        if not _fits(x):
            return super().leaky_relu(x, negative_slope)
        return self._act_forward("leaky_relu", x, negative_slope)

    def backprop_leaky_relu(self, dy, y, negative_slope=0.01):
        if not _fits(dy, y):
            return super().backprop_leaky_relu(dy, y, negative_slope)
        return self._act_backward("leaky_relu", dy, y, negative_slope)

    def elu(self, x, alpha=1.0):
        return self._act_forward("elu", x, alpha) if _fits(x) else super().elu(x, alpha)

    def backprop_elu(self, dy, y, alpha=1.0):
        if not _fits(dy, y):
            return super().backprop_elu(dy, y, alpha)
        return self._act_backward("elu", dy, y, alpha)

    def sigmoid(self, x):
        return self._act_forward("sigmoid", x) if _fits(x) else super().sigmoid(x)

    def backprop_sigmoid(self, dy, y):
        if not _fits(dy, y):
            return super().backprop_sigmoid(dy, y)
        return self._act_backward("sigmoid", dy, y)

    def tanh(self, x):
        return self._act_forward("tanh", x) if _fits(x) else super().tanh(x)

    def backprop_tanh(self, dy, y):
        if not _fits(dy, y):
            return super().backprop_tanh(dy, y)
        return self._act_backward("tanh", dy, y)

    def silu(self, x):
        return self._act_forward("silu", x) if _fits(x) else super().silu(x)

    def backprop_silu(self, dy, x):
        if not _fits(dy, x):
            return super().backprop_silu(dy, x)
        return self._act_backward("silu", dy, x)

    def gelu(self, x, approximate="none"):
        if not _fits(x):
            return super().gelu(x, approximate)
        tanh = special.gelu_is_tanh(approximate)  # raises on a bad value
        return self._act_forward("gelu_tanh" if tanh else "gelu", x)

    def backprop_gelu(self, dy, x, approximate="none"):
        if not _fits(dy, x):
            return super().backprop_gelu(dy, x, approximate)
        tanh = special.gelu_is_tanh(approximate)
        return self._act_backward("gelu_tanh" if tanh else "gelu", dy, x)

    # ---------------------------------------------------------------- reductions
    def _column_pass(self, name: str, head, tail, shape, dtype):
        """Launches the column pass ``name`` (see activations.cu) over a ``(rows,
        cols)`` matrix, ``cols > 0``, with args ``head + (partials, rows, cols,
        chunks) + tail``; returns ``(partials, chunks)``. The split depends only on
        the shape and ``max_blocks``, so the sums' order is the same every call."""
        rows, cols = shape
        tiles, most = -(-cols // 32), self.kernels.max_blocks
        chunks = max(1, min(-(-rows // ROWS_PER_CHUNK), most // tiles))
        grid = chunks * min(tiles, max(1, most // chunks))
        partials = self.xp.empty(chunks * cols, dtype=_acc(dtype))
        sizes = (np.int64(rows), np.int64(cols), np.int64(chunks))
        self.kernels.launch_grid(
            FILE, name, grid, BLOCK, (*head, partials, *sizes, *tail)
        )
        return partials, chunks

    def _column_sums(self, partials, chunks: int, out) -> None:
        """``out[c] = sum_k partials[k, c]`` in order of ``k``."""
        name = f"column_sums<{ctype(out.dtype)}>"
        args = (partials, np.int64(chunks), np.int64(out.size), out)
        self.kernels.launch(FILE, name, out.size, args)

    def _sum_partials(self, partials, out) -> None:
        """``out[0] = sum(partials)`` by one block, in a fixed order."""
        name = f"sum_partials<{ctype(out.dtype)}>"
        args = (partials, np.int64(partials.size), out)
        self.kernels.launch_grid(FILE, name, 1, BLOCK, args)

    # ---------------------------------------------------------------- swish, prelu
    def _beta(self, x, beta):
        """``beta`` as a ``(1,)`` device array of x's dtype, float32 for 16-bit x (a
        Python number is copied to one; a trainable beta is read where it is, no
        host sync), or None when the kernel cannot take it."""
        dtype = stats_dtype(x.dtype)
        if isinstance(beta, numbers.Real):
            return self.xp.full(1, beta, dtype=dtype)
        ok = getattr(beta, "shape", None) == (1,) and _fits(beta)
        return beta if ok and beta.dtype == dtype else None

    def swish(self, x, beta=1.0):
        b = self._beta(x, beta) if _fits(x) else None
        if b is None:
            return super().swish(x, beta)
        y = self.xp.empty_like(x)
        name = f"swish_forward<{ctype(x.dtype)}>"
        self.kernels.launch(FILE, name, x.size, (x, y, np.int64(x.size), b))
        return y

    def backprop_swish_(self, dy, x, beta=1.0, dbeta=None):
        b = self._beta(x, beta) if _fits(dy, x) else None
        if b is None or (dbeta is not None and not _fits(b, dbeta)):
            return super().backprop_swish_(dy, x, beta, dbeta)
        dx = self.xp.empty_like(dy)
        grid = self.kernels.grid(dy.size)
        partials = self.xp.empty(grid, dtype=_acc(dy.dtype))
        name = f"swish_backward<{ctype(dy.dtype)}>"
        args = (dy, x, dx, np.int64(dy.size), b, partials, np.int32(dbeta is not None))
        self.kernels.launch_grid(FILE, name, grid, BLOCK, args)
        if dbeta is not None:
            self._sum_partials(partials, dbeta)
        return dx

    def prelu(self, x, weight):
        if not _prelu_fits(x, weight):
            return super().prelu(x, weight)
        y = self.xp.empty_like(x)
        sizes = (np.int64(x.size), np.int64(x.shape[1]), np.int32(weight.size != 1))
        self.kernels.launch(
            FILE, f"prelu_forward<{ctype(x.dtype)}>", x.size, (x, weight, y, *sizes)
        )
        return y

    def backprop_prelu_(self, dy, x, weight, dweight, need_dx=True):
        if not (_prelu_fits(x, weight) and _fits(dy, x) and _fits(dweight, weight)):
            return super().backprop_prelu_(dy, x, weight, dweight, need_dx)
        per_unit = weight.size != 1
        dx = self.xp.empty_like(dy) if need_dx else dy  # never written without need_dx
        partials, chunks = self._column_pass(
            f"prelu_backward<{ctype(dy.dtype)}>",
            (dy, x, weight, dx),
            (np.int32(per_unit), np.int32(bool(need_dx))),
            dy.shape,
            dy.dtype,
        )
        if per_unit:
            self._column_sums(partials, chunks, dweight)
        else:
            self._sum_partials(partials, dweight)
        return dx if need_dx else None

    # ---------------------------------------------------------------- fused dense
    def dense_activation(self, x, w, b, activation: str, options: dict):
        op, saves = fused_op(activation)
        check_dense(x, w, b)
        act = _kernel_act(op, options)
        fits = b is None or b.flags.c_contiguous
        if act is None or not fits or not kernel_dtype(x.dtype) or w.shape[1] == 0:
            return super().dense_activation(x, w, b, activation, options)
        z = self._matmul(x, w)
        if op == "identity" and b is None:
            return z, None
        y = self.xp.empty_like(z) if saves == "x" else z  # else in place
        name, p = act
        args = (z, z if b is None else b, y, np.int64(z.size), np.int64(z.shape[1]))
        args += (scalar(z.dtype, p), np.int32(b is not None))
        kernel = f"dense_act_forward<{ctype(z.dtype)}, {_ACT[name]}>"
        self.kernels.launch(FILE, kernel, z.size, args)
        return y, (None if op == "identity" else z if saves == "x" else y)

    def backprop_dense_activation_(
        self, x, w, dy, saved, dw, db, activation: str, options: dict, need_dx=True
    ):
        op, _ = fused_op(activation)
        check_dense_grads(x, w, dy, saved, dw, db, op)
        act = _kernel_act(op, options)
        arrays = (dy,) if op == "identity" else (dy, saved)
        if act is None or not _fits(*arrays) or dy.shape[1] == 0:
            return super().backprop_dense_activation_(
                x, w, dy, saved, dw, db, activation, options, need_dx
            )
        dz = self._dz_and_db_(*act, dy, dy if saved is None else saved, db)
        if dw.dtype == dz.dtype:
            self.xp.matmul(x.T, dz, out=dw)
        else:  # 16-bit: a 16-bit GEMM (float32 accumulation) into the float32 arena
            dw[...] = self._matmul(x.T, dz)
        return self._matmul(dz, w.T) if need_dx else None

    def _matmul(self, a, b):
        """``a @ b`` in a's dtype. CuPy's 2-D GEMMs of float16 and bfloat16 arrays run
        cublasGemmEx with float32 accumulation on tensor cores and return the 16-bit
        type; NumPy (the emulator) returns float32 for bfloat16, rounded here."""
        out = self.xp.matmul(a, b)
        return out if out.dtype == a.dtype else out.astype(a.dtype)

    def _dz_and_db_(self, name: str, p, dy, saved, db):
        """``dz = dy * act'(saved)`` (``dy`` itself for identity), and ``db =
        dz.sum(0)`` written in place in the same pass when ``db`` is not None."""
        if db is None:
            return dy if name == "identity" else self._act_backward(name, dy, saved, p)
        dz = dy if name == "identity" else self.xp.empty_like(dy)
        partials, chunks = self._column_pass(
            f"dense_act_backward<{ctype(dy.dtype)}, {_ACT[name]}>",
            (dy, saved, dz),
            (scalar(dy.dtype, p),),
            dy.shape,
            dy.dtype,
        )
        self._column_sums(partials, chunks, db)
        return dz
