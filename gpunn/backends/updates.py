"""Optimizer update math over flat arrays, written once against an array module ``xp``.

These are the reference formulas of the fused optimizer ops; they are elementwise, so
running them on any split of the arena gives bitwise the same result. The NumPy backend
uses that: :func:`foreach_block` runs an update over cache-sized blocks, and over all
cores for large arenas (NumPy releases the GIL inside its loops).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from concurrent.futures import ThreadPoolExecutor

from gpunn.backends import threads
from gpunn.backends.threads import usable_cores  # noqa: F401 (distributed uses it)

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
    _moments_(
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        lr,
        beta1,
        beta2,
        weight_decay,
        decoupled,
        maximize,
    )
    if max_exp_avg_sq is not None:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        denom = xp.sqrt(max_exp_avg_sq)
    else:
        denom = xp.sqrt(exp_avg_sq)
    denom /= bias_correction2_sqrt
    denom += eps
    param -= step_size * exp_avg / denom


def rmsprop_(
    xp,
    param,
    grad,
    square_avg,
    grad_avg,
    momentum_buf,
    *,
    lr,
    alpha,
    eps,
    weight_decay,
    momentum,
    centered,
    maximize,
):
    """``torch.optim.RMSprop``: see :class:`gpunn.optim.RMSprop`."""
    g = _l2_grad(grad, param, weight_decay, maximize)
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if centered:
        lerp_(grad_avg, g, 1 - alpha)
        avg = xp.sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = xp.sqrt(square_avg)
    avg += eps
    if momentum > 0:
        momentum_buf *= momentum
        momentum_buf += g / avg
        param -= lr * momentum_buf
    else:
        param -= lr * g / avg


def adagrad_(xp, param, grad, state_sum, *, clr, eps, weight_decay, maximize):
    """``torch.optim.Adagrad``: see :class:`gpunn.optim.Adagrad`."""
    g = _l2_grad(grad, param, weight_decay, maximize)
    state_sum += g * g
    std = xp.sqrt(state_sum)
    std += eps
    param -= clr * g / std


def adadelta_(
    xp, param, grad, square_avg, acc_delta, *, lr, rho, eps, weight_decay, maximize
):
    """``torch.optim.Adadelta``: see :class:`gpunn.optim.Adadelta`."""
    g = _l2_grad(grad, param, weight_decay, maximize)
    square_avg *= rho
    square_avg += (1 - rho) * g * g
    std = xp.sqrt(square_avg + eps)
    delta = xp.sqrt(acc_delta + eps)
    delta /= std
    delta *= g
    acc_delta *= rho
    acc_delta += (1 - rho) * delta * delta
    param -= lr * delta


def adamax_(
    xp,
    param,
    grad,
    exp_avg,
    exp_inf,
    *,
    beta1,
    beta2,
    eps,
    weight_decay,
    maximize,
    clr,
):
    """``torch.optim.Adamax``: see :class:`gpunn.optim.Adamax`."""
    g = _l2_grad(grad, param, weight_decay, maximize)
    lerp_(exp_avg, g, 1 - beta1)
    exp_inf *= beta2
    xp.maximum(exp_inf, xp.abs(g) + eps, out=exp_inf)
    param -= clr * exp_avg / exp_inf


def nadam_(
    xp,
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    *,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    decoupled,
    maximize,
    bias_correction2,
    grad_coef,
    avg_coef,
):
    """``torch.optim.NAdam``: see :class:`gpunn.optim.NAdam`. ``grad_coef`` and
    ``avg_coef`` are the (negative) host scalars multiplying ``g / denom`` and
    ``m / denom``."""
    g = _moments_(
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        lr,
        beta1,
        beta2,
        weight_decay,
        decoupled,
        maximize,
    )
    denom = xp.sqrt(exp_avg_sq / bias_correction2)
    denom += eps
    param += grad_coef * g / denom
    param += avg_coef * exp_avg / denom


def lars_(
    xp,
    param,
    grad,
    momentum_buf,
    segment_ids,
    *,
    ratio,
    weight_decay,
    adapt,
    lr,
    momentum,
    maximize,
    first_step,
):
    """LARS: see :class:`gpunn.optim.LARS`. ``ratio`` (and ``adapt``, None when every
    tensor adapts) are per-tensor arrays gathered by ``segment_ids``; then the SGD
    momentum step of :func:`sgd_` on ``ratio * (g + weight_decay * adapt * p)``."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + _decay(xp, weight_decay, adapt, segment_ids) * param
    g = g * xp.take(ratio, segment_ids)
    sgd_(
        xp,
        param,
        g,
        momentum_buf,
        lr=lr,
        momentum=momentum,
        dampening=0,
        nesterov=False,
        weight_decay=0,
        maximize=False,
        first_step=first_step,
    )


def lamb_direction_(
    xp,
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    direction,
    segment_ids,
    *,
    beta1,
    beta2,
    eps,
    weight_decay,
    adapt,
    maximize,
    bias_correction1,
    bias_correction2,
):
    """First half of a LAMB step (:class:`gpunn.optim.LAMB`): updates the moments and
    writes ``r = m_hat / (sqrt(v_hat) + eps) + weight_decay * adapt * p`` into
    ``direction``."""
    g = -grad if maximize else grad
    lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    denom = xp.sqrt(exp_avg_sq / bias_correction2)
    denom += eps
    xp.divide(exp_avg, bias_correction1, out=direction)
    direction /= denom
    if weight_decay != 0:
        direction += _decay(xp, weight_decay, adapt, segment_ids) * param


def lamb_apply_(xp, param, direction, segment_ids, *, ratio, lr):
    """Second half of a LAMB step: ``p -= lr * ratio[tensor] * r``."""
    param -= lr * xp.take(ratio, segment_ids) * direction


def _decay(xp, weight_decay, adapt, segment_ids):
    """The weight decay of each element: ``weight_decay``, times its tensor's
    ``adapt`` (0 or 1) unless ``adapt`` is None."""
    if adapt is None:
        return weight_decay
    return weight_decay * xp.take(adapt, segment_ids)


def _l2_grad(grad, param, weight_decay, maximize):
    """The gradient torch's rules start from: negated to maximize, plus the L2 term."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + weight_decay * param
    return g


def _moments_(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    lr,
    beta1,
    beta2,
    weight_decay,
    decoupled,
    maximize,
):
    """The weight decay and moment updates Adam and NAdam share, in torch's order;
    returns the (decayed, signed) gradient ``g``."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * param
    lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    return g


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


def limit_threads(n: int | None) -> None:
    """Caps the update threads (and BLAS's, during fit) at ``n`` (ranks sharing a
    node share its cores); None lifts the cap."""
    threads.cap(n)
    _pool.cache_clear()


@functools.cache
def _pool() -> tuple[ThreadPoolExecutor, int]:
    """The update threads, created on first use (and anew in a forked child, which
    inherits the executor but not its threads)."""
    cores = threads.budget()
    return ThreadPoolExecutor(cores, thread_name_prefix="gpunn-update"), cores


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.cache_clear)


def foreach_block(fn, xp, arrays, kwargs) -> None:
    """Runs the elementwise update ``fn(xp, *arrays, **kwargs)`` over blocks of the
    flat ``arrays`` (None entries pass through): in one call for small arenas, block by
    block for medium ones, and split across all cores for large ones. It returns (or
    raises) only once no thread writes the arrays any more: an exception in the
    waiting thread (a KeyboardInterrupt) waits for the others' blocks first. The
    optimizer runs it inside :func:`gpunn.faults.uninterrupted`, so a Ctrl-C never
    leaves an arena half updated."""
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
    try:
        for future in futures:
            future.result()
    finally:  # never return while a worker still writes
        concurrent.futures.wait(futures)
