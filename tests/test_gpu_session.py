"""bench/gpu_session.sh, the script a short GPU session runs, checked on the CPU with
``--dry-run`` so it cannot rot between the rare sessions that have a GPU: every stage
runs in order under its limit, logs, and ends up in one tarball; a spent budget skips
stages instead of overrunning."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_session.sh"
STAGES = [
    *("env", "warmup", "parity", "headline", "mixed", "stream", "suite"),
    *("grid", "compile", "ops", "sklearn"),
]

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("timeout") and shutil.which("tar")),
    reason="needs bash, timeout and tar",
)


def _run(out: Path, budget: int) -> subprocess.CompletedProcess:
    # a clean environment: under pytest-xdist the workers' PYTEST_XDIST_* variables
    # would make the inner pytest-benchmark run think it is a worker and skip timing
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(PYTHON=sys.executable, GPU_SESSION_BUDGET=str(budget))
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", str(out)],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _members(tarball: Path) -> dict[str, bytes]:
    with tarfile.open(tarball) as tar:
        return {
            m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()
        }


def test_a_dry_run_runs_every_stage_into_one_tarball(tmp_path):
    done = _run(tmp_path, budget=500)  # generous: CI's 2 cores may be busy
    assert done.returncode == 0, done.stdout + done.stderr
    files = _members(tmp_path / "gpu_proof.tgz")
    summary = files["gpu_proof/summary.txt"].decode().splitlines()
    stages = [line.split(":")[0] for line in summary[3:]]
    assert stages == STAGES, summary
    verdicts = dict(line.split(": ", 1) for line in summary[3:])
    for name in STAGES:
        assert f"gpu_proof/{name}.log" in files
        if name != "warmup":
            assert verdicts[name].startswith("exit 0"), (name, verdicts[name])
    # no GPU: warmup fails with the fix, as it must
    assert verdicts["warmup"].startswith("exit 2")
    assert b"needs CuPy" in files["gpu_proof/warmup.log"]
    names = sorted(files)
    junit = [n for n in names if n.endswith(".xml")]
    assert any("/gpu_tests_" in n for n in junit) and any(
        "/parity_" in n for n in junit
    )
    for folder in ("headline", "mixed", "grid", "compile"):
        kinds = {Path(n).suffix for n in names if f"/{folder}/bench_cpu_" in n}
        assert {".json", ".txt"} <= kinds, (folder, names)
    assert any(n.startswith("gpu_proof/suites_cpu_") for n in names)
    assert any(n.startswith("gpu_proof/sklearn/") for n in names)
    assert any(n.startswith("gpu_proof/stream/") for n in names)
    assert "== headline" in done.stdout and "gpunn (cpu)" in done.stdout


def test_a_spent_budget_skips_stages_and_still_packs(tmp_path):
    done = _run(tmp_path, budget=5)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = _members(tmp_path / "gpu_proof.tgz")["gpu_proof/summary.txt"].decode()
    for name in STAGES:
        assert f"{name}: skipped" in summary
