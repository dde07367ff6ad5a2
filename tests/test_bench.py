"""``gpunn bench`` and the benchmark suites: the sides compute the same training step
from the same weights, the gate refuses to time a side that disagrees, failures are
reported, the files are right, the CLI names bad arguments, and ``--quick`` runs end
to end (CI's smoke test). No timing is asserted."""

import importlib.util
import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import gpu_skip_reason

import gpunn
from gpunn.bench import contenders, memory, models, report, runner
from gpunn.cli import main

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def case(model="tiny", batch=32):
    return models.Case(model, batch, "fp32", "cpu")


def sides_for(c):
    weights = models.initial_weights(c.sizes)
    batches = models.synthetic_batches(c.sizes, c.batch)
    found = [
        contenders.Gpunn(c, weights, batches),
        contenders.NumpyMLP(c, weights, batches),
    ]
    if HAS_TORCH:
        found += [
            contenders.Torch(c, weights, batches, variant=v)
            for v in ("fused", "foreach")
        ]
    if HAS_SKLEARN:
        found.append(contenders.Sklearn(c, weights, batches))
    return found


def test_every_side_takes_the_same_steps_from_the_same_weights():
    """First-step losses agree to float32 rounding, and so do the losses after three
    updates: every side runs the same model, loss and Adam (not just the same start)."""
    c = case()
    sides = sides_for(c)
    first = [s.first_step() for s in sides]
    for s in sides:
        s.steps(2)
    later = [s.first_step() for s in sides]
    assert later[0] != pytest.approx(first[0], rel=1e-3)  # training moved the loss
    for side, a, b in zip(sides, first, later):
        assert a == pytest.approx(first[0], rel=1e-5), side.key
        assert b == pytest.approx(later[0], rel=1e-4), side.key


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_sides_take_the_same_steps(precision):
    """gpunn's mixed policy against torch.autocast (and GradScaler for fp16) from the
    same weights: the losses agree within the precision's gate, before and after
    three updates; the plain NumPy side has no mixed precision and says so."""
    pytest.importorskip("ml_dtypes")
    c = models.Case("tiny", 32, precision, "cpu")
    weights = models.initial_weights(c.sizes)
    batches = models.synthetic_batches(c.sizes, c.batch)
    sides = [contenders.Gpunn(c, weights, batches)]
    assert sides[0].model.policy.name == models.PRECISIONS[precision].policy
    if HAS_TORCH:
        sides.append(contenders.Torch(c, weights, batches, variant="fused"))
    rtol = models.PRECISIONS[precision].loss_rtol
    first = [s.first_step() for s in sides]
    for s in sides:
        s.steps(2)
    later = [s.first_step() for s in sides]
    for a, b in zip(first, later):
        assert a == pytest.approx(first[0], rel=rtol)
        assert b == pytest.approx(later[0], rel=rtol)
    with pytest.raises(RuntimeError, match=f"no {precision} mixed precision"):
        contenders.NumpyMLP(c, weights, batches)
    floor = contenders.GemmFloor(c, weights, batches)
    assert floor.layers[0][0].dtype.itemsize == 2  # 16-bit operands


def test_the_standard_models_and_their_counts():
    a = case("A", 1024)
    assert a.sizes == (784, 1024, 1024, 10)
    assert a.flops == 6 * 1024 * (784 * 1024 + 1024 * 1024 + 1024 * 10)
    assert models.MODELS["B"] == (4096,) * 5 + (10,)
    model = models.gpunn_model(a.sizes, "cpu")
    assert models.parameter_count(a.sizes) == model.count_params()
    w = models.initial_weights(a.sizes)
    assert [p.shape for pair in w for p in pair] == [
        p.shape for p in model.get_weights()
    ]
    x0, y0 = models.synthetic_batches(a.sizes, 8)[0]
    assert x0.dtype == np.float32 and y0.dtype == np.int64 and x0.shape == (8, 784)
    assert np.any(x0 != 0) and 0 <= y0.min() and y0.max() < 10


def test_the_gemm_floor_computes_the_steps_products():
    c = case(batch=16)
    floor = contenders.GemmFloor(c, models.initial_weights(c.sizes), [])
    assert floor.first_step() is None
    shapes = []
    for x, w, dy, (y, dw, dx) in floor.layers:
        np.testing.assert_allclose(y, x @ w, rtol=1e-5)
        np.testing.assert_allclose(dw, x.T @ dy, rtol=1e-5)
        if dx is not None:
            np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-5)
        shapes.append((x.shape, w.shape, dx is None))
    assert shapes == [((16, 64), (64, 128), True), ((16, 128), (128, 10), False)]


def run_tiny(monkeypatch, against=("numpy",), spread=float("inf"), **sides):
    """A tiny run; ``spread``: the stability limit (none by default: two rounds of a
    tiny model on a loaded CI machine can differ by anything)."""
    for name, factory in sides.items():
        monkeypatch.setitem(contenders.SIDES, name, ((name, factory),))
    options = runner.Options(
        device="cpu",
        models=("tiny",),
        batch_sizes=(16,),
        steps=2,
        against=against,
        settle_s=0.0,
        unstable_spread=spread,
    )
    return runner.run(options, progress=runner.Progress(1, stream=io.StringIO()))


def by_key(result):
    return {s["key"]: s for s in result["cases"][0]["sides"]}


def test_a_side_whose_first_loss_disagrees_is_reported_and_not_timed(monkeypatch):
    def off(c, weights, batches):
        return contenders.NumpyMLP(c, [(w * 1.5, b) for w, b in weights], batches)

    result = run_tiny(monkeypatch, numpy=off)
    sides = by_key(result)
    assert sides["numpy"]["status"] == "disagrees"
    assert sides["numpy"]["step_s"] == [] and sides["numpy"]["median_step_s"] is None
    assert sides["numpy"]["loss_rel_diff"] > 1e-4
    assert sides["gpunn"]["status"] == "ok" and len(sides["gpunn"]["step_s"]) == 2
    text = report.table(result)
    assert "NOT all sides agree" in text and "not timed: plain NumPy MLP" in text


def test_a_side_that_fails_is_reported_and_the_others_timed(monkeypatch):
    def broken(c, weights, batches):
        raise RuntimeError("out of cheese")

    result = run_tiny(monkeypatch, numpy=broken)
    sides = by_key(result)
    assert sides["numpy"]["status"] == "error"
    assert "out of cheese" in sides["numpy"]["error"]
    for key in ("gpunn", "gemm-floor"):
        assert sides[key]["median_step_s"] > 0
    assert "not timed: numpy: RuntimeError: out of cheese" in report.table(result)


def test_when_gpunn_fails_nothing_is_timed(monkeypatch):
    def broken(c, weights, batches, check_finite=True):
        raise MemoryError("no room")

    monkeypatch.setattr(contenders, "Gpunn", broken)
    result = run_tiny(monkeypatch)
    sides = by_key(result)
    assert sides["gpunn"]["status"] == "error" and "no room" in sides["gpunn"]["error"]
    for key in ("numpy", "gemm-floor"):
        assert sides[key]["status"] == "error" and sides[key]["step_s"] == []
    assert "not compared (gpunn did not run)" in report.table(result)


def test_unknown_contenders_are_refused():
    with pytest.raises(ValueError, match="against must name contenders from torch"):
        runner.Options(device="cpu", against=("jax",)).resolved()


def test_agreeing_sides_get_every_number(monkeypatch):
    result = run_tiny(monkeypatch)
    c = result["cases"][0]
    assert c["reference_loss"] == pytest.approx(np.log(10), rel=0.2)
    sides = by_key(result)
    ours, floor = sides["gpunn"], sides["gemm-floor"]
    assert ours["gpunn_speedup"] == 1.0
    for s in (ours, sides["numpy"], floor):
        assert s["status"] == "ok" and s["median_step_s"] > 0
        assert s["samples_per_s"] == pytest.approx(16 / s["median_step_s"])
        assert s["tflops"] == pytest.approx(
            c["flops_per_step"] / s["median_step_s"] / 1e12
        )
        assert s["pct_gemm_floor"] == pytest.approx(
            100 * floor["median_step_s"] / s["median_step_s"]
        )
        assert s["first_step_s"] > 0
    assert sides["numpy"]["loss_rel_diff"] <= 1e-4
    text = report.table(result)
    assert "all sides agree within rtol 1e-04" in text
    assert "gpunn speed-up over torch eager, Adam fused (fp32)" in text


def test_tf32_on_the_cpu_and_missing_contenders_are_skipped_with_reasons(monkeypatch):
    monkeypatch.setattr(
        contenders,
        "unavailable",
        lambda name, device: "not here" if name == "sklearn" else None,
    )
    options = runner.Options(
        device="cpu",
        models=("tiny",),
        batch_sizes=(8,),
        precisions=("fp32", "tf32"),
        steps=1,
        against=("numpy", "sklearn"),
        settle_s=0.0,
    )
    result = runner.run(options, progress=runner.Progress(1, stream=io.StringIO()))
    assert [c["precision"] for c in result["cases"]] == ["fp32"]
    reasons = {
        s.get("precision") or s.get("contender"): s["reason"] for s in result["skipped"]
    }
    assert (
        "GPU tensor-core mode" in reasons["tf32"] and reasons["sklearn"] == "not here"
    )
    assert "sklearn" not in by_key(result)
    assert "not run: sklearn: not here" in report.table(result)


def test_the_json_is_strict_and_the_files_are_written(monkeypatch, tmp_path):
    result = run_tiny(monkeypatch)
    by_key(result)["numpy"]["first_loss"] = float("nan")
    written = report.save(result, tmp_path)
    text = Path(written["json"]).read_text()
    saved = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert saved["format"] == "gpunn-bench/1"
    assert saved["machine"]["versions"]["gpunn"] == gpunn.__version__
    assert saved["settings"]["device"] == "cpu" and saved["settings"]["steps"] == 2
    assert {s["key"] for s in saved["cases"][0]["sides"]} == {
        "gpunn",
        "numpy",
        "gemm-floor",
    }
    assert Path(written["table"]).read_text() == report.table(result)
    if HAS_MPL:
        assert Path(written["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed" in written["plot"]


def test_host_peak_sees_a_freed_allocation_every_time():
    """The heap measure counts a side's own allocations even when they reuse memory
    an earlier side freed (the resident set would not grow)."""
    for _ in range(2):
        with memory.HostPeak() as peak:
            block = np.ones(64 * 2**20 // 8)
            del block
        if peak.method == "heap":
            assert 64 * 2**20 <= peak.peak_bytes < 80 * 2**20
        elif peak.read() is not None:
            assert peak.peak_bytes >= 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "C"], "--models: expected comma-separated names from tiny, A, B"),
        (["--batch-sizes", "0"], "--batch-sizes: expected comma-separated positive"),
        (["--steps", "0"], "--steps: expected a positive int, got '0'"),
        (["--against", "jax"], "--against: expected comma-separated names from torch"),
        (["--precision", "fp8"], "--precision: expected comma-separated names"),
    ],
)
def test_bad_arguments_name_the_flag(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(gpu_skip_reason() is None, reason="a GPU is usable here")
def test_device_gpu_without_a_gpu_fails_with_the_fix(capsys, tmp_path):
    assert main(["bench", "--device", "gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "gpunn bench: error: --device gpu needs CuPy" in err and "to fix" in err
    assert not any(tmp_path.iterdir())


def test_quick_runs_end_to_end(tmp_path):
    """CI's smoke test of the real command, in a fresh process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpunn",
            "bench",
            "--quick",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "gpunn bench: done in" in done.stderr
    assert done.stdout.count("all sides agree within rtol") == 2
    (path,) = tmp_path.glob("bench_cpu_*.json")
    saved = json.loads(path.read_text())
    assert [(c["model"], c["batch"]) for c in saved["cases"]] == [
        ("tiny", 64),
        ("tiny", 256),
    ]
    expected = {"gpunn", "numpy", "gemm-floor"} | (
        {"torch-fused", "torch-foreach"} if HAS_TORCH else set()
    )
    for c in saved["cases"]:
        timed = {s["key"] for s in c["sides"] if s["median_step_s"]}
        assert timed == expected
    assert len(list(tmp_path.glob("bench_cpu_*.png"))) == int(HAS_MPL)


def test_the_benchmark_suites_run(tmp_path):
    """Each kind of benchmark in bench/ runs once (``--benchmark-disable``), so the
    suites cannot rot while CI never times them."""
    pick = "relu or softmax_cross_entropy or (adam and 1M) or cpu-tiny-64"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(ROOT / "bench"),
            "--benchmark-disable",
            "-k",
            pick,
            "-x",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    passed = int(done.stdout.split(" passed")[0].split()[-1])
    assert passed >= 6


@pytest.mark.gpu
@pytest.mark.skipif(gpu_skip_reason() is not None, reason=f"GPU: {gpu_skip_reason()}")
def test_quick_on_the_gpu_agrees_with_torch(tmp_path):
    options = runner.Options(device="gpu", quick=True, against=("torch",))
    result = runner.run(options)
    for c in result["cases"]:
        sides = {s["key"]: s for s in c["sides"]}
        assert sides["gpunn"]["median_step_s"] > 0
        if HAS_TORCH:
            assert sides["torch-fused"]["status"] == "ok"
        assert sides["gemm-floor"]["peak_bytes"] >= 0
    report.save(result, tmp_path)


def test_every_contender_has_a_reason_or_runs_here():
    for name, device in itertools.product(contenders.AGAINST, ("cpu", "gpu")):
        reason = contenders.unavailable(name, device)
        if name in contenders.CPU_ONLY and device == "gpu":
            assert reason == "runs on the CPU only"
        if name == "numpy" and device == "cpu":
            assert reason is None
        if "torch" in name and not HAS_TORCH:
            assert reason == "torch is not installed"


# ------------------------------------------------------------------ stability, threads
def timed_as(monkeypatch, rounds: dict):
    """Makes each side's rounds take the given seconds per step (by side key)."""
    seen = {}

    def fake(side, n, settle_s=0.0):
        i = seen.get(side.key, 0)
        seen[side.key] = i + 1
        return rounds.get(side.key, [1e-3, 1e-3])[i]

    monkeypatch.setattr(runner, "_time_steps", fake)


def test_rounds_that_disagree_are_flagged_unstable_not_a_ratio(monkeypatch):
    timed_as(monkeypatch, {"gpunn": [1e-3, 1.1e-3], "numpy": [1e-3, 3e-3]})
    result = run_tiny(monkeypatch, spread=1.5)
    sides = by_key(result)
    assert sides["numpy"]["unstable"] == "its rounds differ 3.00x"
    assert sides["numpy"]["gpunn_speedup"] is None
    assert sides["numpy"]["pct_gemm_floor"] is None
    assert sides["numpy"]["median_step_s"] == pytest.approx(2e-3)  # still measured
    assert sides["gpunn"]["unstable"] is None
    assert sides["gpunn"]["pct_gemm_floor"] == pytest.approx(100 / 1.05)
    text = report.table(result)
    row = next(line for line in text.splitlines() if line.startswith("plain NumPy"))
    assert row.count("unstable") == 2
    assert "unstable: plain NumPy MLP: its rounds differ 3.00x" in text
    saved = json.loads(json.dumps(report._finite(result)))
    assert by_key(saved)["numpy"]["unstable"].startswith("its rounds differ")


def test_a_floor_that_moved_makes_every_ratio_unstable(monkeypatch):
    timed_as(monkeypatch, {"gemm-floor": [1e-4, 4e-4]})
    monkeypatch.setattr(report, "MAIN_CONTENDER", "numpy")
    result = run_tiny(monkeypatch, spread=1.5)
    for side in by_key(result).values():
        assert "GEMM floor moved 4.00x" in side["unstable"] or side["key"] == (
            "gemm-floor"
        )
        assert side["gpunn_speedup"] is None and side["pct_gemm_floor"] is None
    summary = report.summary(result)
    assert summary[2].split() == ["tiny", "unstable"]  # speed-up over numpy
    assert summary[6].split() == ["tiny", "unstable"]  # % of the floor


def test_every_side_gets_the_same_thread_budget(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setenv("GPUNN_NUM_THREADS", "1")
    seen = []
    real = runner._time_steps

    def watch(side, n, settle_s=0.0):
        infos = threadpoolctl.threadpool_info()
        seen.extend(i["num_threads"] for i in infos if i["user_api"] == "blas")
        return real(side, n, settle_s)

    monkeypatch.setattr(runner, "_time_steps", watch)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        result = run_tiny(monkeypatch)
    assert result["settings"]["threads"] == 1
    assert seen and max(seen) == 1
    assert "1 threads for every side" in report.table(result)
    if HAS_TORCH:
        import torch

        before = torch.get_num_threads()
        try:
            c = case()
            contenders.Torch(c, models.initial_weights(c.sizes), [], "fused")
            assert torch.get_num_threads() == 1
        finally:
            torch.set_num_threads(before)
