"""The standard benchmark models and data (the README's "Performance").

Every contender trains the same ReLU MLP: ``Dense`` layers of the sizes below with ReLU
between them, softmax cross-entropy on the logits, Adam (lr 1e-3, torch's defaults),
float32, on synthetic data already on the device. gpunn's model, seeded, gives the
initial weights every other side copies.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

MODELS = {
    "tiny": (64, 128, 10),
    "A": (784, 1024, 1024, 10),
    "B": (4096, 4096, 4096, 4096, 4096, 10),
}
DEFAULT_BATCHES = {"cpu": (64, 256, 1024), "gpu": (256, 1024, 4096, 16384, 65536)}
DEFAULT_MODELS = {"cpu": ("tiny", "A"), "gpu": ("tiny", "A", "B")}
LR = 1e-3
N_BATCHES = 2  # distinct batches each side cycles through, the same on every side


@dataclass(frozen=True)
class Precision:
    """A precision every side runs in, and how close first-step losses must be."""

    name: str
    tf32: bool  # float32 GEMMs on TF32 tensor cores (GPU only)
    loss_rtol: float  # first-step losses agree when |a - b| <= loss_rtol * |b|
    gpu_only: bool
    policy: str = "float32"  # gpunn's precision policy
    half: str | None = None  # the 16-bit type of mixed precision (torch.autocast's)

    @property
    def scaled(self) -> bool:
        """Whether the loss is scaled (float16: GradScaler / gpunn's LossScaler)."""
        return self.half == "float16"


PRECISIONS = {
    "fp32": Precision("fp32", tf32=False, loss_rtol=1e-4, gpu_only=False),
    "tf32": Precision("tf32", tf32=True, loss_rtol=1e-2, gpu_only=True),
    # mixed precision: 16-bit layers, float32 master weights and losses
    "bf16": Precision("bf16", False, 2e-2, False, "mixed_bfloat16", "bfloat16"),
    "fp16": Precision("fp16", False, 1e-2, False, "mixed_float16", "float16"),
}


@dataclass(frozen=True)
class Case:
    """One cell of the grid: a model at a batch size in a precision on a device."""

    model: str
    batch: int
    precision: str
    device: str

    @property
    def sizes(self) -> tuple[int, ...]:
        return MODELS[self.model]

    @property
    def flops(self) -> int:
        return step_flops(self.sizes, self.batch)

    def label(self) -> str:
        return f"{self.model} b={self.batch} {self.precision}"


def step_flops(sizes, batch: int) -> int:
    """GEMM FLOPs of one training step: forward, dW and dX, ``2 * B * n_in * n_out``
    each per layer, so ``6 * B * sum(n_i * n_(i+1))`` (the README's "Targets"). The
    first layer's dX is not computed by any side, but the count follows the
    convention."""
    return 6 * batch * sum(a * b for a, b in itertools.pairwise(sizes))


def parameter_count(sizes) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def gpunn_model(
    sizes,
    backend,
    seed: int = 0,
    tf32: bool = False,
    check_finite=True,
    precision: str = "float32",
):
    """gpunn's standard model on ``backend`` in ``precision`` (a policy name),
    compiled with Adam and no metrics (mixed_float16: dynamic loss scaling)."""
    import gpunn
    from gpunn.layers import Dense

    layers = [Dense(n, activation="relu") for n in sizes[1:-1]] + [Dense(sizes[-1])]
    model = gpunn.Sequential(
        layers,
        input_dim=sizes[0],
        backend=backend,
        seed=seed,
        tf32=tf32,
        precision=precision,
    )
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(LR), metrics=[])
    model.check_finite = check_finite
    return model


@functools.lru_cache(maxsize=1)  # a grid's cases of one model share them
def initial_weights(sizes, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``((W, b), ...)`` per layer, ``W`` shaped ``(n_in, n_out)``, float32,
    read-only: the initial weights of gpunn's model with ``seed`` (built on the CPU:
    the draws are the same on every backend). Sides copy them."""
    weights = gpunn_model(tuple(sizes), "cpu", seed).get_weights()
    for w in weights:
        w.flags.writeable = False
    return tuple(zip(weights[::2], weights[1::2]))


def synthetic_batches(sizes, batch: int, xp=np, seed: int = 1):
    """``N_BATCHES`` pairs ``(X (batch, n_in) float32 ~ N(0, 1), y (batch,) int64)``
    drawn with ``xp``'s seeded generator (NumPy on the CPU, CuPy on the GPU)."""
    rng = xp.random.default_rng(seed)
    out = []
    for _ in range(N_BATCHES):
        X = rng.standard_normal((batch, sizes[0]), dtype=xp.float32)
        y = rng.integers(0, sizes[-1], batch, dtype=xp.int64)
        out.append((X, y))
    return out
