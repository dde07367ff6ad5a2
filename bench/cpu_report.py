"""CPU speed report for the NumPy backend (run: python bench/cpu_report.py --out DIR).

1. Model A (784-1024-1024-10, float32, Adam, softmax cross-entropy) at batch 1024: the
   median gpunn training step against the GEMM floor, i.e. the same eight GEMMs the
   step needs (3 forward, 3 dW, 2 dX; the first layer needs no dX) timed alone with
   NumPy's BLAS into preallocated outputs. PyTorch CPU eager is timed too when
   installed.
2. Digits: gpunn and scikit-learn's MLPClassifier, the same 256-256 ReLU network, Adam
   lr 1e-3, batch 64, 50 epochs, on the same standardized 80/20 split; test accuracy
   and fit time of each.

Every contender runs in this one process, alternating, so machine load hits all alike;
compare ratios, not absolute times, across runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

import gpunn
from gpunn import datasets
from gpunn.layers import Dense

MODEL_A = (784, 1024, 1024, 10)


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_a(batch: int, seed: int = 0):
    model = gpunn.Sequential(
        [Dense(n, activation="relu") for n in MODEL_A[1:-1]] + [Dense(MODEL_A[-1])],
        input_dim=MODEL_A[0],
        backend="cpu",
        seed=seed,
    )
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-3))
    return model


def gemm_floor_step(batch: int, rng) -> callable:
    """The step's own GEMMs, alone, into preallocated float32 outputs."""
    f32 = np.float32
    sizes = MODEL_A
    x = rng.standard_normal((batch, sizes[0])).astype(f32)
    ws = [rng.standard_normal((a, b)).astype(f32) for a, b in itertools.pairwise(sizes)]
    hs = [np.empty((batch, n), f32) for n in sizes[1:]]
    dws = [np.empty_like(w) for w in ws]
    dhs = [np.empty((batch, n), f32) for n in sizes[1:-1]]
    dy = rng.standard_normal((batch, sizes[-1])).astype(f32)

    def step():
        inp = [x, hs[0], hs[1]]
        for i in range(3):
            np.matmul(inp[i], ws[i], out=hs[i])
        np.matmul(hs[1].T, dy, out=dws[2])
        np.matmul(dy, ws[2].T, out=dhs[1])
        np.matmul(hs[0].T, dhs[1], out=dws[1])
        np.matmul(dhs[1], ws[1].T, out=dhs[0])
        np.matmul(x.T, dhs[0], out=dws[0])

    return step


def torch_step(model, x, y):
    import torch

    torch.manual_seed(0)
    layers = []
    for i, (w, b) in enumerate(
        zip(model.get_weights()[::2], model.get_weights()[1::2])
    ):
        linear = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.ReLU()] if i < 2 else [linear]
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(net(tx), ty)
        loss.backward()
        opt.step()
        return loss.item()

    return step, torch.__version__


def bench_model_a(batch: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    model = model_a(batch)
    x = rng.standard_normal((batch, MODEL_A[0])).astype(np.float32)
    y = rng.integers(0, MODEL_A[-1], batch)
    first_loss = model.evaluate(x, y)["loss"]
    xd, yd = model._dataset(x, y)  # on the device once, as fit does
    contenders = {
        "gpunn": lambda: model._train_batch(xd, yd),
        "gemm_floor": gemm_floor_step(batch, rng),
    }
    result = {"batch": batch, "layers": MODEL_A}
    try:
        step, version = torch_step(model_a(batch), x, y)
        torch_first = step()
        result["torch_version"] = version
        result["first_step_loss"] = {"gpunn": first_loss, "torch": torch_first}
        contenders["torch_eager"] = step
    except ImportError:
        pass
    times = {name: [] for name in contenders}
    for _ in range(repeats):  # interleave, so load hits every contender alike
        for name, fn in contenders.items():
            times[name].append(median_time(fn, 5, warmup=1))
    medians = {name: statistics.median(t) for name, t in times.items()}
    flops = 6 * batch * sum(a * b for a, b in itertools.pairwise(MODEL_A))
    result["median_step_s"] = medians
    result["gpunn_over_gemm_floor"] = medians["gpunn"] / medians["gemm_floor"]
    if "torch_eager" in medians:
        result["torch_over_gpunn"] = medians["torch_eager"] / medians["gpunn"]
    result["gpunn_gflops"] = flops / medians["gpunn"] / 1e9
    return result


def bench_digits(epochs: int, seeds: int) -> dict:
    """gpunn vs MLPClassifier on ``seeds`` different splits and initializations
    (seed k: split k, both models seeded k), run alternately."""
    import warnings

    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = datasets.load_digits()

    def ours(split, seed):
        X_tr, X_te, y_tr, y_te = split
        layers = [Dense(256, activation="relu"), Dense(256, activation="relu")]
        model = gpunn.Sequential([*layers, Dense(10)], backend="cpu", seed=seed)
        model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-3))
        start = time.perf_counter()
        model.fit(X_tr, y_tr, epochs=epochs, batch_size=64, verbose=0)
        seconds = time.perf_counter() - start
        return seconds, model.evaluate(X_te, y_te)["accuracy"]

    def theirs(split, seed):
        X_tr, X_te, y_tr, y_te = split
        clf = MLPClassifier(
            (256, 256),
            solver="adam",
            learning_rate_init=1e-3,
            batch_size=64,
            max_iter=epochs,
            tol=0.0,
            n_iter_no_change=epochs + 1,
            random_state=seed,
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X_tr, y_tr)
        seconds = time.perf_counter() - start
        return seconds, clf.score(X_te, y_te)

    runs = {"gpunn": [], "sklearn": []}
    for seed in range(seeds):
        split = datasets.train_test_split(X, y, 0.2, seed=seed, stratify=True)
        split = (*datasets.standardize(split[0], split[1]), split[2], split[3])
        runs["gpunn"].append(ours(split, seed))
        runs["sklearn"].append(theirs(split, seed))
    result = {"epochs": epochs, "batch": 64, "hidden": [256, 256], "seeds": seeds}
    result["sklearn_version"] = sklearn.__version__
    for name, values in runs.items():
        result[name] = {
            "fit_s": [s for s, _ in values],
            "test_accuracy": [a for _, a in values],
            "median_fit_s": statistics.median(s for s, _ in values),
            "mean_test_accuracy": statistics.fmean(a for _, a in values),
        }
    result["sklearn_time_over_gpunn"] = (
        result["sklearn"]["median_fit_s"] / result["gpunn"]["median_fit_s"]
    )
    return result


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gpunn": gpunn.__version__,
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "blas": _blas(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _blas() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - only informative
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5, help="digits splits/seeds")
    args = parser.parse_args()
    report = {"machine": machine(), "model_a": bench_model_a(1024, args.repeats)}
    try:
        report["digits"] = bench_digits(args.epochs, args.seeds)
    except ImportError:
        report["digits"] = "scikit-learn not installed"
    a = report["model_a"]
    print(f"model A, batch 1024, float32, Adam ({a['gpunn_gflops']:.0f} GFLOP/s):")
    for name, seconds in a["median_step_s"].items():
        print(f"  {name:12s} {seconds * 1e3:8.1f} ms/step")
    print(f"  gpunn / GEMM floor = {a['gpunn_over_gemm_floor']:.3f}")
    if "torch_over_gpunn" in a:
        print(f"  torch eager / gpunn = {a['torch_over_gpunn']:.3f}")
    d = report["digits"]
    if isinstance(d, dict):
        print(
            f"digits, 256-256 ReLU, Adam, batch 64, {d['epochs']} epochs, "
            f"{d['seeds']} seeds:"
        )
        for name in ("gpunn", "sklearn"):
            accs = " ".join(f"{a:.4f}" for a in d[name]["test_accuracy"])
            print(
                f"  {name:8s} median {d[name]['median_fit_s']:5.2f} s/fit  "
                f"mean test accuracy {d[name]['mean_test_accuracy']:.4f} ({accs})"
            )
        print(f"  sklearn time / gpunn time = {d['sklearn_time_over_gpunn']:.2f}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"cpu_report_{time.strftime('%Y%m%d_%H%M%S')}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
