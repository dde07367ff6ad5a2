"""The reference backend: every op written once against ``self.xp``.

``CupyBackend`` subclasses :class:`NumpyBackend` with ``xp = cupy`` and overrides only
the ops a custom kernel makes faster; everything else runs this code unchanged on the
GPU. So each formula in these ops is *the* definition of the op, and the kernels are
tested against it.

The ops are grouped by topic in mixins, one module each: :class:`LayerOps`
(``ops_layers.py``: dense, activations, penalties, dropout, normalization),
:class:`FusedOps` (``ops_fused.py``: Dense fused with its activation),
:class:`LossOps` (``ops_losses.py``: fused losses), :class:`MetricOps`
(``ops_metrics.py``: metric reductions) and :class:`OptimOps` (``ops_optim.py``:
optimizer updates, norms, clipping). :class:`NumpyBackend` combines them with the array
basics (moving arrays, random generators, the flat-array checks of the updates).

Conventions: arrays are ``(batch, features)``; an op never changes its inputs unless its
name ends in ``_``; outputs keep the input dtype (Python scalars are weak under NumPy 2 /
CuPy 14 promotion rules, so ``x * 0.5`` stays float32).
"""

from __future__ import annotations

import numpy as np

from gpunn.backends import dlpack, threads, updates
from gpunn.backends.ops_fused import FusedOps
from gpunn.backends.ops_layers import LayerOps
from gpunn.backends.ops_losses import LossOps
from gpunn.backends.ops_metrics import MetricOps
from gpunn.backends.ops_optim import OptimOps
from gpunn.backends.prefetch import Prefetcher
from gpunn.errors import ArgumentTypeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class NumpyBackend(FusedOps, LayerOps, LossOps, MetricOps, OptimOps):
    """Runs every op with NumPy on the CPU."""

    name = "cpu"
    xp = np
    # The backend's "device out of memory" exceptions, which the model re-raises as
    # gpunn.faults.DeviceMemoryError naming the layer and batch size. None on the CPU:
    # NumPy's MemoryError is left as it is.
    out_of_memory_errors: tuple = ()
    tf32 = False  # whether float32 matmuls may use TF32 (GPU only)

    # ---------------------------------------------------------------- arrays
    def asarray(self, x, dtype=None):
        """Moves ``x`` to this backend (a no-op for arrays already here)."""
        if hasattr(x, "__cuda_array_interface__"):
            raise ArgumentTypeError(
                "got a GPU (CuPy) array but this model runs on the CPU backend; "
                "pass x.get() or build the model with backend='gpu'"
            )
        return np.asarray(x, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        """Copies ``x`` to a host NumPy array."""
        return np.asarray(x)

    def from_dlpack(self, x, name: str = "x"):
        """An array of this backend from an object with ``__dlpack__`` (a PyTorch,
        JAX or CuPy tensor): zero-copy when it lives in host memory; a GPU tensor
        is copied to the host once, by its library. bfloat16 comes as float32.
        ArgumentTypeError naming ``name`` when it cannot be read."""
        return dlpack.to_host(x, name)

    def prefetch(self, batches, depth: int = 2) -> Prefetcher:
        """An iterator over the host batches of ``batches`` (tuples of NumPy arrays
        or None) as batches of this backend, read ``depth`` ahead on a background
        thread (see :mod:`gpunn.backends.prefetch`). On the CPU a host batch is
        used as it is."""
        return Prefetcher(batches, depth)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def take_rows(self, x, index):
        """``x[index]`` for a 1-D device index array, as a new contiguous array."""
        return self.xp.take(x, index, axis=0)

    def synchronize(self) -> None:
        """Waits for queued device work (nothing to wait for on the CPU)."""

    def set_tf32(self, enabled: bool) -> None:
        """TF32 matmuls exist on NVIDIA GPUs only: on the CPU this changes nothing
        (``tf32`` stays False), so the same code runs on both."""

    def cpu_threads(self):
        """A context manager: while it is held, BLAS runs at most
        :func:`gpunn.backends.threads.budget` threads (``GPUNN_NUM_THREADS``, else the
        cores this process has been given); ``fit`` holds it. Yields the budget."""
        return threads.blas_limited()

    # ---------------------------------------------------------------- random
    def generator(self, seed: int):
        """A random generator for this backend's arrays seeded with ``seed``
        (``numpy.random.default_rng``); no global RNG state is read or changed."""
        return np.random.default_rng(seed)

    def generator_state(self, generator):
        """A JSON-able copy of ``generator``'s state, or None where it cannot be
        captured; :meth:`set_generator_state` puts it back. A generator of gpunn's
        own (one with ``get_state``/``set_state``, e.g. dropout's counter-based one)
        keeps its state itself, on every backend."""
        if hasattr(generator, "get_state"):
            return generator.get_state()
        return generator.bit_generator.state

    def set_generator_state(self, generator, state) -> None:
        if hasattr(generator, "set_state"):
            generator.set_state(state)
        else:
            generator.bit_generator.state = state

    # ---------------------------------------------------------------- flat updates
    def _foreach_block(self, fn, arrays, hyper) -> None:
        """How an elementwise update runs: cache-sized blocks and all cores on CPU."""
        updates.foreach_block(fn, self.xp, arrays, hyper)

    @staticmethod
    def _check_flat(names, arrays) -> None:
        """Raises ValueError (before anything is written) unless every array is a
        contiguous 1-D float array of the param's size and dtype (None: absent)."""
        param = arrays[0]
        for name, a in zip(names, arrays):
            if a is None:
                continue
            if a.dtype not in FLOAT_DTYPES or a.dtype != param.dtype:
                raise ValueError(
                    f"{name} must be float32 or float64 like param ({param.dtype}), "
                    f"got {a.dtype}"
                )
            if a.ndim != 1 or a.shape != param.shape or not a.flags.c_contiguous:
                raise ValueError(
                    f"{name} must be a contiguous 1-D array of shape {param.shape}, "
                    f"got shape {a.shape}"
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
