"""Kernel-backed ops: fused softmax-cross-entropy and binary cross-entropy kernels
(``kernels/losses.cu``): the loss and ``dlogits`` in one pass over the logits.

Mixed into :class:`~gpunn.backends.kernel_backend.KernelBackend`; needs ``self.xp``
and ``self.kernels`` (a :class:`~gpunn.backends.kernels.KernelLibrary`).

Softmax cross-entropy gives each row to one warp when ``C <= WARP_MAX_CLASSES``
(1024: 32 logits or fewer per lane, several rows per block) and to one block of 256
threads above (a large vocabulary keeps every lane busy). The denominator ``D`` of
the mean (class weights, ``ignore_index``) is computed on the device by a one-block
kernel, so no step waits for the host. Both losses write per-row (per-block) terms
that a one-block kernel sums in a fixed order: the same input gives the same bits.
Inputs the kernels do not take (other dtypes, integer labels other than int32 /
int64, non-contiguous arrays, no classes) run the reference op, which also raises
the reference's errors.
"""

from __future__ import annotations

import numbers

import numpy as np

from gpunn.backends.kernels import BLOCK, ctype, kernel_dtype, scalar

FILE = "losses.cu"
WARP_MAX_CLASSES = 1024  # C above this: one block per row
REDUCE_BLOCK = 256  # threads of the one-block kernels (ce_stats, sum_terms)
HAS_SW, HAS_W, HAS_IGNORE, SMOOTH = 1, 2, 4, 8  # losses.cu's LossFlags

_LABELS = {np.dtype(np.int32): "int", np.dtype(np.int64): "long long"}


def _acc(dtype) -> np.dtype:
    """The kernels' accumulate dtype: float64 for float64, else float32."""
    return np.dtype(np.float64 if dtype == np.float64 else np.float32)


def _contiguous(*arrays) -> bool:
    return all(a is None or a.flags.c_contiguous for a in arrays)


def _ce_fits(logits, labels, sw, cw, ignore_index) -> bool:
    """Whether the kernels take these inputs (the reference checks them after)."""
    if not kernel_dtype(logits.dtype) or logits.ndim != 2 or logits.shape[1] == 0:
        return False
    if labels.ndim == 1:
        kind_ok = labels.dtype in _LABELS
    else:
        kind_ok = labels.dtype == logits.dtype and ignore_index is None
    in_range = ignore_index is None or (
        isinstance(ignore_index, numbers.Integral)
        and not isinstance(ignore_index, bool)
        and -(2**63) <= ignore_index < 2**63
    )
    return kind_ok and in_range and _contiguous(logits, labels, sw, cw)


def _flags(sw, w, ignore_index, label_smoothing) -> np.int32:
    return np.int32(
        (sw is not None) * HAS_SW
        | (w is not None) * HAS_W
        | (ignore_index is not None) * HAS_IGNORE
        | bool(label_smoothing) * SMOOTH
    )


class GpuLossOps:
    """Overrides of the reference fused losses that run the loss kernels."""

    def softmax_cross_entropy(
        self,
        logits,
        labels,
        sample_weight=None,
        class_weight=None,
        label_smoothing: float = 0.0,
        temperature: float = 1.0,
        ignore_index: int | None = None,
    ):
        args = (logits, labels, sample_weight, class_weight)
        options = (label_smoothing, temperature, ignore_index)
        if not _ce_fits(*args, ignore_index):
            return super().softmax_cross_entropy(*args, *options)
        self._check_cross_entropy(*args, ignore_index)
        n, c = logits.shape
        dtype = logits.dtype
        flags = _flags(sample_weight, class_weight, ignore_index, label_smoothing)
        dlogits = self.xp.empty_like(logits)
        row_loss = self.xp.empty(n, _acc(dtype))
        block_rows = c > WARP_MAX_CLASSES
        kind = f"{ctype(dtype)}, {_LABELS[labels.dtype]}" if labels.ndim == 1 else None
        absent = logits  # stands in for an absent array; its flag bit is 0
        sw = absent if sample_weight is None else sample_weight
        cw = absent if class_weight is None else class_weight
        scalars = [
            scalar(dtype, v)
            for v in (temperature, 1 - label_smoothing, label_smoothing / c)
        ]
        scalars.append(scalar(dtype, 1 / max(n, 1)))
        if kind is None:
            name = f"ce_rows<{ctype(dtype)}, {str(block_rows).lower()}>"
            arrays = (logits, labels, sw, cw, dlogits, row_loss)
            rest = (*scalars, scalar(dtype, max(n, 1)), flags)
        else:
            name = f"ce_labels<{kind}, {str(block_rows).lower()}>"
            stats = self._ce_stats(labels, cw, c, ignore_index, flags, kind)
            arrays = (logits, labels, sw, cw, stats, dlogits, row_loss)
            rest = (*scalars, np.int64(ignore_index or 0), flags)
        grid = self.kernels.grid(n, 1 if block_rows else BLOCK // 32)
        args = (*arrays, np.int64(n), np.int64(c), *rest)
        self.kernels.launch_grid(FILE, name, grid, BLOCK, args)
        return self._sum_terms(row_loss, 1.0, dtype), dlogits

    def _ce_stats(self, labels, cw, c, ignore_index, flags, kind):
        """``[1 / D, sum_c w_c]`` on the device (``ce_stats``); only with class
        weights or ``ignore_index`` (else the kernel uses ``1 / batch`` and ``C``)."""
        stats = self.xp.empty(2, _acc(cw.dtype))
        if flags & (HAS_W | HAS_IGNORE):
            n, ignore = np.int64(labels.shape[0]), np.int64(ignore_index or 0)
            args = (labels, cw, n, np.int64(c), ignore, flags, stats)
            self.kernels.launch_grid(FILE, f"ce_stats<{kind}>", 1, REDUCE_BLOCK, args)
        return stats

    def _sum_terms(self, terms, scale, dtype):
        """``scale * sum(terms)`` as a 0-d array of ``dtype``, in a fixed order."""
        loss = self.xp.empty((), dtype)
        args = (terms, np.int64(terms.size), scalar(dtype, scale), loss)
        name = f"sum_terms<{ctype(dtype)}>"
        self.kernels.launch_grid(FILE, name, 1, REDUCE_BLOCK, args)
        return loss

    def binary_cross_entropy(
        self,
        logits,
        targets,
        sample_weight=None,
        pos_weight=None,
        label_smoothing: float = 0.0,
    ):
        args = (logits, targets, sample_weight, pos_weight)
        fits = kernel_dtype(logits.dtype) and logits.ndim == 2 and _contiguous(*args)
        if not fits:
            return super().binary_cross_entropy(*args, label_smoothing)
        self._check_binary_cross_entropy(*args)
        dtype, size = logits.dtype, logits.size
        flags = _flags(sample_weight, pos_weight, None, label_smoothing)
        dlogits = self.xp.empty_like(logits)
        grid = self.kernels.grid(size, BLOCK)
        partials = self.xp.empty(grid, _acc(dtype))
        inv_size = 1 / max(size, 1)
        sw = logits if sample_weight is None else sample_weight
        pw = logits if pos_weight is None else pos_weight
        kernel_args = (
            logits,
            targets,
            sw,
            pw,
            dlogits,
            partials,
            *map(np.int64, logits.shape),
            scalar(dtype, 1 - label_smoothing),
            scalar(dtype, 0.5 * label_smoothing),
            scalar(dtype, inv_size),
            np.int64(1 if pos_weight is None else pos_weight.shape[0]),
            flags,
        )
        name = f"bce<{ctype(dtype)}>"
        self.kernels.launch_grid(FILE, name, grid, BLOCK, kernel_args)
        scale = inv_size if sample_weight is None else 1.0
        return self._sum_terms(partials, scale, dtype), dlogits
