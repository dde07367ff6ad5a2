"""The numbers of one case from its sides' round times: medians, throughput, the
spread of the rounds, which sides are unstable, and the ratios between stable ones."""

from __future__ import annotations

import statistics

UNSTABLE_SPREAD = 1.5  # slowest / fastest round above this: the side is unstable


def summarize(case, results: list, limit: float = UNSTABLE_SPREAD) -> None:
    """Fills each timed side's median, samples/s, TFLOP/s, spread and stability, and
    the ratios between stable sides (see :mod:`gpunn.bench.runner`)."""
    for result in results:
        if result.status == "ok" and result.step_s:
            median = result.median_step_s = statistics.median(result.step_s)
            result.samples_per_s = case.batch / median
            result.tflops = case.flops / median / 1e12
            result.spread = max(result.step_s) / min(result.step_s)
    timed = {r.key: r for r in results if r.timed}
    ours, floor = timed.get("gpunn"), timed.get("gemm-floor")
    _mark_unstable(timed.values(), floor, limit)
    for result in timed.values():
        if ours is not None and not (result.unstable or ours.unstable):
            result.gpunn_speedup = result.median_step_s / ours.median_step_s
        if floor is not None and not (result.unstable or floor.unstable):
            result.pct_gemm_floor = 100 * floor.median_step_s / result.median_step_s
        if result.key == "torch-compile":
            result.compile_s = max(result.first_step_s - result.median_step_s, 0.0)


def _mark_unstable(timed, floor, limit: float) -> None:
    """Sets ``unstable`` (the reason) on each side whose rounds disagree by more
    than ``limit`` (slowest / fastest), and on every side when the floor's did."""
    moved = floor is not None and floor.spread > limit
    for result in timed:
        reasons = []
        if result.spread > limit:
            reasons.append(f"its rounds differ {result.spread:.2f}x")
        if moved and result is not floor:
            reasons.append(f"the GEMM floor moved {floor.spread:.2f}x between rounds")
        result.unstable = "; ".join(reasons) or None
