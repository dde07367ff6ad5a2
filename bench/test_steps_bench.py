"""Benchmarks of whole training steps of the standard models (the README's "Performance"): one
``fit`` step (forward, fused loss, backward, finite check, fused Adam) on a batch
already on the device, against the GEMM floor: the step's own GEMMs timed alone
through the same BLAS."""

from __future__ import annotations

import pytest
from suite import measure, median_seconds, usable_backend

from gpunn.bench import contenders, models

CASES = {
    "cpu": [("tiny", 64), ("tiny", 1024), ("A", 64), ("A", 256), ("A", 1024)],
    "gpu": [("tiny", 256), ("A", 256), ("A", 4096), ("A", 16384), ("B", 4096)],
}
GRID = [(device, m, b) for device, cases in CASES.items() for m, b in cases]


@pytest.mark.parametrize(
    ("device", "model", "batch"), GRID, ids=[f"{d}-{m}-{b}" for d, m, b in GRID]
)
def test_training_step(benchmark, device, model, batch):
    backend = usable_backend(device)
    case = models.Case(model, batch, "fp32", device)
    weights = models.initial_weights(case.sizes)
    batches = models.synthetic_batches(case.sizes, batch, backend.xp)
    ours = contenders.Gpunn(case, weights, batches)
    floor = contenders.GemmFloor(case, weights, batches)
    floor_s = median_seconds(backend, lambda: floor.steps(1), 7)
    ours.first_step()
    measure(
        benchmark,
        backend,
        lambda: ours.steps(1),
        flops=case.flops,
        floor_s=floor_s,
        rounds=10 if device == "cpu" else None,
    )
