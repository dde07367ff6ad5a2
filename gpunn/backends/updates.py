"""Optimizer update math over flat arrays, written once against an array module ``xp``.

These are the reference formulas of the fused optimizer ops; they are elementwise, so
running them on any split of the arena gives bitwise the same result. The NumPy backend
uses that: :func:`foreach_block` runs an update over cache-sized blocks, and over all
cores for large arenas (NumPy releases the GIL inside its loops).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

BLOCK = 1 << 16  # elements per block: one block's temporaries stay in L2
PARALLEL_MIN = 1 << 20  # below this, thread hand-offs cost more than they save


def sgd_(
    xp,
    param,
    grad,
    momentum_buf,
    *,
    lr,
    momentum,
    dampening,
    nesterov,
    weight_decay,
    maximize,
    first_step,
):
    """``torch.optim.SGD``: see :meth:`NumpyBackend.sgd_update_`."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + weight_decay * param
    if momentum != 0:
        if first_step:
            momentum_buf[...] = g
        else:
            momentum_buf *= momentum
            momentum_buf += (1 - dampening) * g
        g = g + momentum * momentum_buf if nesterov else momentum_buf
    param -= lr * g


def adam_(
    xp,
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    max_exp_avg_sq,
    *,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    decoupled,
    maximize,
    step_size,
    bias_correction2_sqrt,
):
    """``torch.optim.Adam`` / ``AdamW``: see :meth:`NumpyBackend.adam_update_`. The
    operations and their order are torch's single-tensor path, so float64 results
    agree to the last bit or one (torch's CPU kernels use fused multiply-adds)."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * param
    lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    if max_exp_avg_sq is not None:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        denom = xp.sqrt(max_exp_avg_sq)
    else:
        denom = xp.sqrt(exp_avg_sq)
    denom /= bias_correction2_sqrt
    denom += eps
    param -= step_size * exp_avg / denom


def lerp_(start, end, weight: float) -> None:
    """``start += weight * (end - start)`` in place, rounded as ``torch.lerp`` rounds
    (it switches formula at ``weight = 0.5`` to stay exact at both ends)."""
    if weight < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)


def _slices(arrays, lo, hi):
    return [None if a is None else a[lo:hi] for a in arrays]


def _run_range(fn, xp, arrays, kwargs, lo, hi):
    for start in range(lo, hi, BLOCK):
        fn(xp, *_slices(arrays, start, min(start + BLOCK, hi)), **kwargs)


@functools.cache
def _pool() -> tuple[ThreadPoolExecutor, int]:
    """The update threads, created on first use (and anew in a forked child, which
    inherits the executor but not its threads)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return ThreadPoolExecutor(cores, thread_name_prefix="gpunn-update"), cores


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.cache_clear)


def foreach_block(fn, xp, arrays, kwargs) -> None:
    """Runs the elementwise update ``fn(xp, *arrays, **kwargs)`` over blocks of the
    flat ``arrays`` (None entries pass through): in one call for small arenas, block by
    block for medium ones, and split across all cores for large ones."""
    n = arrays[0].size
    if n <= 2 * BLOCK:
        fn(xp, *arrays, **kwargs)
        return
    pool, cores = _pool()
    if n < PARALLEL_MIN or cores == 1:
        _run_range(fn, xp, arrays, kwargs, 0, n)
        return
    step = -(-n // (cores * BLOCK)) * BLOCK
    futures = [
        pool.submit(_run_range, fn, xp, arrays, kwargs, lo, min(lo + step, n))
        for lo in range(0, n, step)
    ]
    for future in futures:
        future.result()
