"""The ``gpunn bench --against sklearn`` side of gpunn.sklearn's MLPClassifier and
bench/sklearn_vs_gpunn.py, run small."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

from gpunn.bench import contenders, models

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpunn_sklearn_side_takes_gpunns_steps():
    """From the same weights on the same batches, scikit-learn's side, gpunn's
    Sequential and gpunn.sklearn's MLPClassifier have the same losses before and
    after three Adam steps (scikit-learn's Adam differs from torch's only in where
    eps goes)."""
    case = models.Case("tiny", 32, "fp32", "cpu")
    weights = models.initial_weights(case.sizes)
    batches = models.synthetic_batches(case.sizes, case.batch)
    sides = [
        contenders.Gpunn(case, weights, batches),
        contenders.Sklearn(case, weights, batches),
        contenders.GpunnSklearn(case, weights, batches),
    ]
    first = [side.first_step() for side in sides]
    for side in sides:
        side.steps(2)
    later = [side.first_step() for side in sides]
    assert later[0] != pytest.approx(first[0], rel=1e-3)
    assert first == pytest.approx([first[0]] * 3, rel=1e-5)
    assert later == pytest.approx([later[0]] * 3, rel=1e-4)
    assert ("gpunn-sklearn", contenders.GpunnSklearn) in contenders.SIDES["sklearn"]


@pytest.mark.skipif(
    importlib.util.find_spec("threadpoolctl") is None, reason="needs threadpoolctl"
)
def test_the_digits_benchmark_runs_and_writes_its_json(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "sklearn_vs_gpunn.py"),
            "--seeds",
            "1",
            "--blas-threads",
            "1",
            "--max-iter",
            "8",
            "--out",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (path,) = tmp_path.glob("sklearn_vs_gpunn_cpu_*.json")
    report = json.loads(path.read_text())
    assert report["sklearn"]["mean_test_accuracy"] > 0.8
    gpunn64 = report["gpunn_float64"]["runs"][0]
    assert gpunn64["test_accuracy"] == report["sklearn"]["runs"][0]["test_accuracy"]
    assert report["sklearn_time_over_gpunn_float32"] > 0
    assert "sklearn time / gpunn_float32 time" in result.stdout
