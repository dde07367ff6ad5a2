"""The sides of a benchmark: gpunn and what it is compared with.

Each side is built from one :class:`~gpunn.bench.models.Case`, the initial weights
(``[(W (n_in, n_out), b)]`` float32) and the shared batches (``[(X, y)]`` on the
device), and offers:

- ``first_step()``: one training step on batch 0, returning that batch's loss before
  the update as a float (None for the GEMM floor, which has no loss);
- ``steps(n)``: ``n`` more steps, cycling through the batches, with no host read;
- ``sync()``: waits for the device.

So every side starts from the same weights and sees the same batches in the same
order. ``SIDES`` maps each ``--against`` name to its sides and :func:`unavailable`
says why one cannot run here.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import warnings

import numpy as np

from gpunn.bench import memory
from gpunn.bench.models import LR, PRECISIONS
from gpunn.bench.side import Side
from gpunn.bench.torch_side import Torch


class Gpunn(Side):
    """gpunn's model stepped as ``fit`` steps it: the data validated and on the
    device once, then per batch forward, fused loss, backward, the finite check and
    the fused optimizer update."""

    key = "gpunn"

    def __init__(self, case, weights, batches, check_finite: bool = True):
        from gpunn import faults
        from gpunn.backends import get_backend
        from gpunn.bench.models import gpunn_model

        backend = get_backend(case.device)
        self.label = f"gpunn ({backend.name})"
        precision = PRECISIONS[case.precision]
        model = gpunn_model(
            case.sizes,
            backend,
            tf32=precision.tf32,
            check_finite=check_finite,
            precision=precision.policy,
        )
        model.set_weights([a for pair in weights for a in pair])
        super().__init__(case, [model._dataset(x, y)[:2] for x, y in batches])
        self.model, self._check = model, faults.StepCheck(model)

    def steps(self, n: int) -> None:
        from gpunn import faults

        self.model.backend.set_tf32(self.model.tf32)  # as fit does at its start
        with faults.interrupts_deferred():  # as fit holds it (each step: no syscall)
            super().steps(n)

    def _step(self, x, y):
        return self.model._train_batch(x, y, None, self._check)[0]

    def sync(self) -> None:
        self.model.backend.synchronize()


class NumpyMLP(Side):
    """The MLP as one would write it in plain NumPy: float32 throughout, new
    temporaries each step, softmax cross-entropy and torch's Adam by hand."""

    key, label = "numpy", "plain NumPy MLP"
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def __init__(self, case, weights, batches):
        _float32_only(case, self.label)
        super().__init__(case, batches)
        self.params = [a.copy() for pair in weights for a in pair]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def _step(self, x, y):
        loss, grads = self._loss_and_grads(x, y)
        self._adam(grads)
        return loss

    def _loss_and_grads(self, x, y):
        ws, bs = self.params[::2], self.params[1::2]
        hs = [x]
        for i, (w, b) in enumerate(zip(ws, bs)):
            z = hs[-1] @ w + b
            hs.append(z if i == len(ws) - 1 else np.maximum(z, 0))
        rows = np.arange(len(x))
        shifted = hs[-1] - hs[-1].max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=1))
        loss = float(np.mean(log_sum - shifted[rows, y]))
        d = np.exp(shifted - log_sum[:, None])
        d[rows, y] -= 1
        d /= len(x)
        grads = []
        for i in reversed(range(len(ws))):
            grads[:0] = [hs[i].T @ d, d.sum(axis=0)]
            if i > 0:
                d = (d @ ws[i].T) * (hs[i] > 0)
        return loss, grads

    def _adam(self, grads) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step = LR / (1 - b1**self.t)
        root_bc2 = (1 - b2**self.t) ** 0.5
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= step * m / (np.sqrt(v) / root_bc2 + self.eps)


class Sklearn(Side):
    """scikit-learn's ``MLPClassifier`` (ReLU, Adam, no L2) with the same weights,
    one ``partial_fit`` per batch (its own input checks included: that is its step).
    Its Adam puts eps outside the bias correction of the root (a tiny difference
    from torch's), which does not touch the first-step loss."""

    key, label = "sklearn", "scikit-learn MLPClassifier"

    def __init__(self, case, weights, batches):
        _float32_only(case, self.label)
        super().__init__(case, batches)
        self.clf = self._classifier(case)(
            case.sizes[1:-1],
            activation="relu",
            solver="adam",
            alpha=0.0,
            batch_size=case.batch,
            learning_rate_init=LR,
            shuffle=False,
            random_state=0,
        )
        x, y = batches[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.partial_fit(x, y, classes=np.arange(case.sizes[-1]))
        for (w, b), cw, cb in zip(weights, self.clf.coefs_, self.clf.intercepts_):
            cw[...], cb[...] = w, b  # its optimizer updates these arrays in place
        if not hasattr(self.clf, "_optimizer"):
            raise RuntimeError("this scikit-learn keeps no _optimizer to reset")
        del self.clf._optimizer  # the next partial_fit starts a fresh Adam

    def _step(self, x, y):
        self.clf.partial_fit(x, y)
        return self.clf.loss_

    @staticmethod
    def _classifier(case):
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier


class GpunnSklearn(Sklearn):
    """gpunn.sklearn's ``MLPClassifier`` (float32, on the case's device) stepped as
    the scikit-learn side is: one ``partial_fit`` per batch, input checks included,
    with scikit-learn's update rules on gpunn's backend."""

    key, label = "gpunn-sklearn", "MLPClassifier (gpunn)"

    @staticmethod
    def _classifier(case):
        import functools

        from gpunn.sklearn import MLPClassifier

        return functools.partial(MLPClassifier, device=case.device)


class GemmFloor(Side):
    """The step's own GEMMs alone, through the same BLAS (NumPy's on the CPU, cuBLAS
    through CuPy on the GPU) into preallocated outputs: per layer the forward
    product, dW and (below the first layer) dX, on random operands of the
    precision's GEMM type (float32; bfloat16 or float16 for mixed precision, whose
    products CuPy runs as cublasGemmEx with float32 accumulation)."""

    key = "gemm-floor"

    def __init__(self, case, weights, batches):
        from gpunn.backends import get_backend

        self.backend = get_backend(case.device)
        self.label = f"GEMM floor ({'cuBLAS' if case.device == 'gpu' else 'BLAS'})"
        precision = PRECISIONS[case.precision]
        self.tf32 = precision.tf32
        xp = self.backend.xp
        rng = xp.random.default_rng(2)
        dtype = _gemm_dtype(precision)

        def normal(*shape):
            return rng.standard_normal(shape, dtype=xp.float32).astype(dtype)

        self.layers = []
        for i, (w, _) in enumerate(weights):
            n_in, n_out = w.shape
            x, dy, w = (
                normal(case.batch, n_in),
                normal(case.batch, n_out),
                xp.asarray(w).astype(dtype),
            )
            outs = (
                xp.empty_like(dy),
                xp.empty_like(w),
                xp.empty_like(x) if i else None,
            )
            self.layers.append((x, w, dy, outs))
        self.matmul = xp.matmul
        super().__init__(case, batches)

    def steps(self, n: int) -> None:
        self.backend.set_tf32(self.tf32)
        super().steps(n)

    def _next(self):
        return ()  # its own operands: the shared batches are not used

    def _step(self):
        for x, w, dy, (y, dw, dx) in self.layers:
            self.matmul(x, w, out=y)
            self.matmul(x.T, dy, out=dw)
            if dx is not None:
                self.matmul(dy, w.T, out=dx)

    def sync(self) -> None:
        self.backend.synchronize()


SIDES = {  # --against name -> ((side key, factory(case, weights, batches)), ...)
    "torch": (
        ("torch-fused", functools.partial(Torch, variant="fused")),
        ("torch-foreach", functools.partial(Torch, variant="foreach")),
    ),
    "torch-compile": (("torch-compile", functools.partial(Torch, variant="compile")),),
    "numpy": (("numpy", NumpyMLP),),
    "sklearn": (("sklearn", Sklearn), ("gpunn-sklearn", GpunnSklearn)),
}
AGAINST = tuple(SIDES)
CPU_ONLY = ("numpy", "sklearn")


def _float32_only(case, label: str) -> None:
    """Refuses a mixed-precision case for a side that has none (reported, not
    timed)."""
    if PRECISIONS[case.precision].half is not None:
        raise RuntimeError(f"{label} has no {case.precision} mixed precision")


def _gemm_dtype(precision):
    """The dtype of a precision's GEMM operands."""
    if precision.half is None:
        return np.dtype(np.float32)
    from gpunn.precision import bfloat16

    return bfloat16() if precision.half == "bfloat16" else np.dtype(np.float16)


def unavailable(name: str, device: str) -> str | None:
    """Why contender ``name`` cannot run on ``device`` here, or None when it can."""
    if name in CPU_ONLY and device == "gpu":
        return "runs on the CPU only"
    module = "sklearn" if name == "sklearn" else "torch" if "torch" in name else None
    if module and importlib.util.find_spec(module) is None:
        extra = "scikit-learn" if module == "sklearn" else "torch"
        return f"{extra} is not installed"
    if module == "torch" and device == "gpu":
        import torch

        if not torch.cuda.is_available():
            return f"torch {torch.__version__} has no usable CUDA device"
    if name == "torch-compile" and device == "cpu" and not shutil.which("g++"):
        return "torch.compile on the CPU needs a C++ compiler (g++) on PATH"
    return None


def tracker(side_key: str, device: str):
    """The :mod:`gpunn.bench.memory` tracker for a side on ``device``."""
    if device == "cpu":
        return memory.HostPeak()
    if side_key.startswith("torch"):
        return memory.TorchCudaPeak()
    return memory.CupyPoolPeak()


def prepare(factories, device: str) -> None:
    """Builds every side once on a small tiny-model case and takes two steps, then
    drops it: libraries are loaded and initialized (torch's thread pools and
    allocator, CuPy's handles, gpunn's kernels compiled) before any measured side is
    built, so a side's peak memory and first-step latency leave that one-time
    start-up out. Failures are left for the measured run to report."""
    from gpunn.backends import get_backend
    from gpunn.bench.models import Case, initial_weights, synthetic_batches

    case = Case("tiny", 8, "fp32", device)
    weights = initial_weights(case.sizes)
    batches = synthetic_batches(case.sizes, case.batch, get_backend(device).xp)
    for _, factory in factories:
        try:
            side = factory(case, weights, batches)
            side.first_step()
            side.steps(1)
            side.sync()
        except Exception:  # noqa: BLE001, S112 - reported by the measured run
            continue
