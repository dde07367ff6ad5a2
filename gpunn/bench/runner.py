"""The comparison behind ``gpunn bench``: every case of the grid, every side, one run.

For each case (model, batch size, precision) on one device:

1. Build each side (gpunn, the contenders asked for, the GEMM floor) from the same
   initial weights and batches; time its first step (first-step latency, which for
   ``torch.compile`` includes compiling) and ``WARMUP`` more, while its peak memory is
   tracked (:mod:`gpunn.bench.memory`). A side that raises is reported, not timed.
2. The gate: each side's first-step loss must agree with gpunn's within the
   precision's tolerance; a side that disagrees is reported and not timed.
3. Timing: ``rounds`` rounds (5, or ``steps`` when fewer); in each, every side runs
   one untimed step, then ``ceil(steps / rounds)`` steps between two device
   synchronizations, in an order rotated every round, so load from elsewhere falls
   on all sides alike. On the CPU a side that follows one running on another
   library's worker threads (torch's OpenMP pool against NumPy's BLAS) first waits
   ``SETTLE_S`` for those threads to stop spinning. A side's step
   time is the median over rounds of round time / steps.
4. Stability: a side whose slowest round is more than ``unstable_spread`` (1.5)
   times its fastest, or any side of a case whose GEMM floor's rounds moved that
   much (the machine's load changed under the case), is marked ``unstable`` with
   the reason; no ratio (``gpunn x``, ``%floor``) is computed from an unstable
   side: the table and the JSON say "unstable" instead.

Every side gets the same thread budget (:func:`gpunn.backends.threads.budget`:
``GPUNN_NUM_THREADS``, else the cores this process has been given): BLAS (gpunn,
NumPy, scikit-learn, the floor) is limited to it for the whole run, and torch's
intra-op threads are set to it.
"""

from __future__ import annotations

import datetime
import gc
import math
import sys
import time
from dataclasses import asdict, dataclass, field

from gpunn.backends import threads
from gpunn.bench import contenders, machine, models
from gpunn.bench.models import PRECISIONS, Case
from gpunn.bench.progress import Progress
from gpunn.bench.summary import UNSTABLE_SPREAD, summarize

WARMUP = 2
ROUNDS = 5
# CPU: OpenBLAS and OpenMP worker threads spin for up to ~0.1 s after their last
# call; torch timed while NumPy's BLAS threads still spun on the same cores (or the
# other way round) ran at half speed in some rounds on 2 cores, so a timed run that
# follows a side on the other library's threads waits this long first
SETTLE_S = 0.25
QUICK = {"models": ("tiny",), "steps": 5, "against": ("torch", "numpy")}
QUICK_BATCHES = {"cpu": (64, 256), "gpu": (256, 4096)}


@dataclass
class Options:
    """What to run; None fields take the device's defaults (or ``--quick``'s)."""

    device: str = "auto"
    models: tuple | None = None
    batch_sizes: tuple | None = None
    precisions: tuple = ("fp32",)
    against: tuple | None = None
    steps: int | None = None
    quick: bool = False
    check_finite: bool = True
    settle_s: float | None = None  # pause before each timed run: SETTLE_S on the CPU
    unstable_spread: float = UNSTABLE_SPREAD

    def resolved(self) -> Options:
        """A copy with the device chosen and every default filled in."""
        device = self.device
        if device == "auto":
            from gpunn.backends import gpu_status

            device = "gpu" if gpu_status()[0] is not None else "cpu"
        elif device == "gpu":
            from gpunn.backends import get_backend

            get_backend("gpu")  # no usable GPU: BackendUnavailableError with the fix
        elif device != "cpu":
            raise ValueError(f"device must be cpu, gpu or auto, got {device!r}")
        unknown = set(self.against or ()) - set(contenders.AGAINST)
        if unknown:
            raise ValueError(
                f"against must name contenders from {', '.join(contenders.AGAINST)}, "
                f"got {', '.join(sorted(unknown))}"
            )
        quick = self.quick
        return Options(
            device=device,
            models=self.models
            or (QUICK["models"] if quick else models.DEFAULT_MODELS[device]),
            batch_sizes=self.batch_sizes
            or (QUICK_BATCHES[device] if quick else models.DEFAULT_BATCHES[device]),
            precisions=self.precisions,
            against=self.against or (QUICK["against"] if quick else contenders.AGAINST),
            steps=self.steps or (QUICK["steps"] if quick else 20),
            quick=quick,
            check_finite=self.check_finite,
            settle_s=(SETTLE_S if device == "cpu" else 0.0)
            if self.settle_s is None
            else self.settle_s,
            unstable_spread=self.unstable_spread,
        )


@dataclass
class SideResult:
    """One side of one case, as the JSON stores it (times in seconds)."""

    key: str
    label: str
    status: str = "ok"  # ok | disagrees | error
    error: str | None = None
    first_loss: float | None = None
    loss_rel_diff: float | None = None
    first_step_s: float | None = None
    peak_bytes: int | None = None
    step_s: list = field(default_factory=list)
    median_step_s: float | None = None
    samples_per_s: float | None = None
    tflops: float | None = None
    spread: float | None = None  # slowest round / fastest round
    unstable: str | None = None  # why its ratios are not reported, or None
    gpunn_speedup: float | None = None  # this side's step time / gpunn's
    pct_gemm_floor: float | None = None  # the floor's step time / this side's, in %
    compile_s: float | None = None  # torch.compile: first step minus a step

    @property
    def timed(self) -> bool:
        return self.status == "ok" and self.median_step_s is not None


def run(options: Options, progress=None) -> dict:
    """Runs the grid of ``options`` (resolved here) and returns the report dict that
    :mod:`gpunn.bench.report` prints, saves and plots."""
    options = options.resolved()
    cases, skipped = _cases(options)
    reasons = {n: contenders.unavailable(n, options.device) for n in options.against}
    skipped += [{"contender": n, "reason": r} for n, r in reasons.items() if r]
    against = [n for n, reason in reasons.items() if reason is None]
    keys = ["gpunn"] + [k for n in against for k, _ in contenders.SIDES[n]]
    rounds = min(ROUNDS, options.steps)
    bar = progress or Progress(len(cases) * (len(keys) + 1) * (rounds + 1))
    started = datetime.datetime.now().astimezone()
    with threads.blas_limited() as budget:  # the same thread budget for every side
        contenders.prepare(_factories(against, options), options.device)
        records = [_run_case(case, against, options, rounds, bar) for case in cases]
    bar.close()
    return {
        "format": "gpunn-bench/1",
        "created": started.isoformat(timespec="seconds"),
        "machine": machine.machine(options.device),
        "settings": {
            **asdict(options),
            "rounds": rounds,
            "steps_per_round": math.ceil(options.steps / rounds),
            "warmup_steps": WARMUP,
            "optimizer": f"Adam(lr={models.LR})",
            "loss": "softmax cross-entropy",
            "dtype": "float32",
            "memory": _memory_method(options.device),
            "threads": budget,
        },
        "skipped": skipped,
        "cases": records,
    }


def _cases(options: Options) -> tuple[list, list]:
    cases, skipped = [], []
    for precision in options.precisions:
        if PRECISIONS[precision].gpu_only and options.device != "gpu":
            skipped.append(
                {
                    "precision": precision,
                    "reason": "a GPU tensor-core mode; the CPU "
                    "computes float32 GEMMs in float32 (that is fp32)",
                }
            )
            continue
        for model in options.models:
            for batch in options.batch_sizes:
                cases.append(Case(model, batch, precision, options.device))
    return cases, skipped


def _run_case(case: Case, against, options: Options, rounds: int, bar) -> dict:
    weights = models.initial_weights(case.sizes)
    batches = models.synthetic_batches(case.sizes, case.batch, _xp(case.device))
    sides, results = [], []
    for key, factory in _factories(against, options):
        bar.step(f"{case.label()}: building {key}")
        side, result = _build(key, factory, case, weights, batches)
        results.append(result)
        if side is not None:
            sides.append((side, result))
    _gate(case, results)
    live = [(s, r) for s, r in sides if r.status == "ok"]
    per_round = math.ceil(options.steps / rounds)
    last = None  # the threads the previous timed side ran on
    for r in range(rounds if live else 0):
        for side, result in live[r % len(live) :] + live[: r % len(live)]:
            bar.step(f"{case.label()}: {result.key} round {r + 1}/{rounds}")
            pause = options.settle_s if last not in (None, side.threads) else 0.0
            result.step_s.append(_time_steps(side, per_round, pause))
            last = side.threads
    summarize(case, results, options.unstable_spread)
    bar.case_done(case.label())
    del sides, live
    _free(case.device)
    return {
        "model": case.model,
        "sizes": list(case.sizes),
        "batch": case.batch,
        "precision": case.precision,
        "tf32": PRECISIONS[case.precision].tf32,
        "device": case.device,
        "flops_per_step": case.flops,
        "parameters": models.parameter_count(case.sizes),
        "loss_rtol": PRECISIONS[case.precision].loss_rtol,
        "reference_loss": results[0].first_loss,
        "sides": [asdict(r) for r in results],
    }


def _factories(against, options: Options) -> list:
    """``[(side key, factory(case, weights, batches))]``: gpunn, the contenders,
    the GEMM floor."""

    def ours(case, weights, batches):
        return contenders.Gpunn(case, weights, batches, options.check_finite)

    factories = [("gpunn", ours)]
    factories += [pair for name in against for pair in contenders.SIDES[name]]
    return factories + [("gemm-floor", contenders.GemmFloor)]


def _build(key, factory, case, weights, batches):
    """``(side or None, SideResult)``: built, first step timed, warmed up."""
    result = SideResult(key=key, label=key)
    try:
        with contenders.tracker(key, case.device) as peak:
            side = factory(case, weights, batches)
            result.label = side.label
            start = time.perf_counter()
            loss = side.first_step()
            side.sync()
            result.first_step_s = time.perf_counter() - start
            side.steps(WARMUP)
            side.sync()
        result.first_loss, result.peak_bytes = loss, peak.peak_bytes
        return side, result
    except Exception as exc:  # noqa: BLE001 - any failure of one side is reported
        result.status, result.error = "error", f"{type(exc).__name__}: {exc}"[:500]
        _free(case.device)
        return None, result


def _gate(case: Case, results: list) -> None:
    """Marks every side whose first-step loss is not gpunn's within the tolerance;
    without gpunn's loss (it failed) nothing is timed."""
    reference, rtol = results[0].first_loss, PRECISIONS[case.precision].loss_rtol
    for result in results:
        if result.status != "ok":
            continue
        if reference is None:
            result.status, result.error = "error", "gpunn did not run: no reference"
        elif result.key != "gemm-floor":  # the floor has no loss
            diff = abs(result.first_loss - reference) / max(abs(reference), 1e-30)
            result.loss_rel_diff = diff
            if not diff <= rtol:  # NaN disagrees too
                result.status = "disagrees"


def _time_steps(side, n: int, settle_s: float = 0.0) -> float:
    """Seconds per step of ``n`` steps, after a pause of ``settle_s`` (for the last
    side's BLAS or OpenMP threads to stop spinning on the cores) and one untimed step
    that takes the cost of switching sides (cold caches, sleeping threads)."""
    time.sleep(settle_s)
    side.steps(1)
    side.sync()
    start = time.perf_counter()
    side.steps(n)
    side.sync()
    return (time.perf_counter() - start) / n


def _xp(device: str):
    from gpunn.backends import get_backend

    return get_backend(device).xp


def _free(device: str) -> None:
    gc.collect()
    if device != "gpu":
        return
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()
    if sys.modules.get("torch") is not None:
        sys.modules["torch"].cuda.empty_cache()


def _memory_method(device: str) -> str:
    if device == "gpu":
        return (
            "peak device bytes while built and warmed up: CuPy pool peak "
            "(gpunn, GEMM floor), torch.cuda.max_memory_allocated (torch)"
        )
    from gpunn.bench.memory import HostPeak

    what = {
        "heap": "C heap bytes in use (glibc mallinfo2)",
        "rss": "resident set (approximate)",
    }[HostPeak().method]
    return f"peak growth of the {what} while built and warmed up, sampled"
