"""Data-parallel scaling on the CPU: the same global batches on 1 and on N MPI ranks.

    python bench/scaling.py [--ranks 1,2] [--models tiny,A] [--batch-sizes 256,1024]
                            [--steps 30] [--out bench/results]

For each model and global batch size it launches ``mpiexec -n R`` of this file in
worker mode (``--worker``). A worker trains ``steps`` Adam steps of the standard model
(float32, softmax cross-entropy, synthetic data) after two warm-up steps; rank 0
reports the median step time. The table gives samples/s, the speed-up over one rank
and the scaling efficiency (speed-up / ranks). The JSON written to ``--out`` holds the
machine, versions and every timing. Ranks on one node share its cores (gpunn caps
each rank's BLAS threads at cores / ranks), so on a 2-core machine 2 ranks can at
best match 1 rank using both cores: the efficiency measured there is the cost of the
all-reduce and of smaller per-rank GEMMs, not a gain.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np

MODELS = {"tiny": [64, 128, 10], "A": [784, 1024, 1024, 10]}


def worker(model_name: str, batch: int, steps: int) -> None:
    import gpunn

    sizes = MODELS[model_name]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch * (steps + 2), sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], len(X))
    layers = [gpunn.Dense(n, activation="relu") for n in sizes[1:-1]]
    model = gpunn.Sequential([*layers, gpunn.Dense(sizes[-1])], sizes[0], seed=0)
    model.compile("softmax_cross_entropy", "adam", metrics=())

    class Clock(gpunn.callbacks.Callback):
        def __init__(self):
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    clock = Clock()
    model.fit(
        X, y, epochs=1, batch_size=batch, shuffle=False, verbose=0, callbacks=[clock]
    )
    if gpunn.distributed.is_primary():
        times = clock.times[2:]  # warm-up steps excluded
        print(json.dumps({"median_s": float(np.median(times)), "times_s": times}))


def run(ranks: int, model: str, batch: int, steps: int) -> dict:
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    mpiexec = mpiexec or shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("no mpiexec: pip install 'gpunn[mpi]'")
    command = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker"]
    command += [model, str(batch), str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--models", default="tiny,A")
    parser.add_argument("--batch-sizes", default="256,1024")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results")
    )
    args = parser.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    rows = []
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            base = None
            for r in ranks:
                result = run(r, model, batch, args.steps)
                median = result["median_s"]
                base = base or median * ranks[0]
                speedup = base / median
                row = {"model": model, "batch": batch, "ranks": r, **result}
                row.update(samples_per_s=batch / median, speedup=speedup)
                row["efficiency"] = speedup / r
                rows.append(row)
                print(
                    f"{model:>5} batch {batch:>6} ranks {r}: {median * 1e3:8.2f} ms/step "
                    f"{batch / median:12,.0f} samples/s  speed-up {speedup:5.2f}  "
                    f"efficiency {speedup / r:5.1%}",
                    flush=True,
                )
    import gpunn

    report = {
        "what": "data-parallel scaling, CPU, MPI",
        "machine": {
            "platform": platform.platform(),
            "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
        },
        "versions": {"gpunn": gpunn.__version__, "numpy": np.__version__},
        "steps": args.steps,
        "rows": rows,
    }
    try:
        from mpi4py import MPI

        report["versions"]["mpi"] = MPI.Get_library_version().splitlines()[0]
    except ImportError:
        pass
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    path = os.path.join(args.out, f"scaling_cpu_{stamp}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
