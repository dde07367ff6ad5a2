"""gpunn.sklearn.MLPClassifier against scikit-learn's MLPClassifier: same data,
same settings, fit time and test accuracy side by side in one run.

    python bench/sklearn_vs_gpunn.py [--seeds 5] [--blas-threads N] [--out DIR]
    python bench/sklearn_vs_gpunn.py --gpu [--samples 200000] [--epochs 5] [--out DIR]

CPU (default): the digits (1797 x 64, standardized, 75/25 split per seed), both
estimators with scikit-learn's default parameters (100 ReLU units, Adam, batch
min(200, n), up to 200 epochs with its stopping rule) and ``random_state=seed``;
gpunn in its default float32 and, for reference, in float64 (where its fit is
scikit-learn's to rounding). The sides alternate within each seed, so machine load
hits them alike; the ratio of median fit times is the result, with the mean test
accuracies beside it (equal accuracy is part of the claim).

GPU (``--gpu``): a synthetic 10-class problem of ``--samples`` x 100 (default
200,000) at scikit-learn's default batch of 200 (1000 steps per epoch) where each
step's launches, not its FLOPs, decide; scikit-learn on the CPU against gpunn on the
GPU (float32, and float64), the same fixed number of epochs each (``tol=0``), after
one warm-up fit of gpunn (kernel compilation and CuPy's start-up left out). Time per
epoch and test accuracy are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path


def _fit(est, X, y) -> float:
    from sklearn.exceptions import ConvergenceWarning

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return time.perf_counter() - start


def _sides(device: str, params: dict) -> dict:
    """name -> estimator factory(seed)."""
    from sklearn.neural_network import MLPClassifier as Theirs

    from gpunn.sklearn import MLPClassifier as Ours

    return {
        "sklearn": lambda seed: Theirs(random_state=seed, **params),
        "gpunn_float32": lambda seed: Ours(
            random_state=seed, device=device, dtype="float32", **params
        ),
        "gpunn_float64": lambda seed: Ours(
            random_state=seed, device=device, dtype="float64", **params
        ),
    }


def _run(sides: dict, splits, order) -> dict:
    """Fits every side on every split, in ``order`` rotated per split."""
    runs = {name: [] for name in sides}
    for k, (X_tr, X_te, y_tr, y_te) in enumerate(splits):
        names = order[k % len(order) :] + order[: k % len(order)]
        for name in names:
            est = sides[name](k)
            seconds = _fit(est, X_tr, y_tr)
            runs[name].append(
                {
                    "fit_s": seconds,
                    "epochs": int(est.n_iter_),
                    "s_per_epoch": seconds / est.n_iter_,
                    "test_accuracy": float(est.score(X_te, y_te)),
                }
            )
    return {name: _summary(values) for name, values in runs.items()}


def _summary(values: list) -> dict:
    return {
        "runs": values,
        "median_fit_s": statistics.median(v["fit_s"] for v in values),
        "median_s_per_epoch": statistics.median(v["s_per_epoch"] for v in values),
        "mean_test_accuracy": statistics.fmean(v["test_accuracy"] for v in values),
    }


def cpu_digits(seeds: int, max_iter: int = 200) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    splits = []
    for seed in range(seeds):
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=seed)
        scaler = StandardScaler().fit(X_tr)
        splits.append((scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te))
    sides = _sides("cpu", {"max_iter": max_iter})
    _fit(sides["gpunn_float32"](0), *splits[0][::2])  # imports, first calls
    result = _run(sides, splits, list(sides))
    result["settings"] = {
        "data": "digits 1797 x 64, standardized, 75/25 split per seed",
        "params": "scikit-learn's defaults (hidden (100,), relu, adam, batch 200)"
        + ("" if max_iter == 200 else f", max_iter={max_iter}"),
        "seeds": seeds,
    }
    return _ratios(result)


def gpu_synthetic(samples: int, epochs: int) -> dict:
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    X, y = make_classification(
        n_samples=samples, n_features=100, n_informative=40, n_classes=10,
        random_state=0,
    )  # fmt: skip
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.1, random_state=0)
    params = {"max_iter": epochs, "tol": 0.0, "n_iter_no_change": epochs + 1}
    sides = _sides("gpu", params)
    warm = _sides("gpu", {"max_iter": 1})
    _fit(warm["gpunn_float32"](0), X_tr[:2000], y_tr[:2000])  # compile, start CuPy
    _fit(warm["gpunn_float64"](0), X_tr[:2000], y_tr[:2000])
    result = _run(sides, [(X_tr, X_te, y_tr, y_te)], list(sides))
    result["settings"] = {
        "data": f"make_classification {samples} x 100, 10 classes, 90/10 split",
        "params": f"defaults (batch 200), {epochs} epochs, tol=0",
    }
    return _ratios(result)


def _ratios(result: dict) -> dict:
    base = result["sklearn"]["median_fit_s"]
    for name in ("gpunn_float32", "gpunn_float64"):
        result[f"sklearn_time_over_{name}"] = base / result[name]["median_fit_s"]
    return result


def _print(result: dict) -> None:
    print(f"{result['settings']['data']}; {result['settings']['params']}")
    for name in ("sklearn", "gpunn_float32", "gpunn_float64"):
        side = result[name]
        print(
            f"  {name:14s} median fit {side['median_fit_s']:7.3f} s  "
            f"({side['median_s_per_epoch'] * 1e3:7.2f} ms/epoch)  "
            f"mean test accuracy {side['mean_test_accuracy']:.4f}"
        )
    for name in ("gpunn_float32", "gpunn_float64"):
        print(
            f"  sklearn time / {name} time = {result[f'sklearn_time_over_{name}']:.2f}"
        )


def main(argv=None) -> None:
    from gpunn.bench.machine import machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="the 200k x 100 GPU case")
    parser.add_argument("--seeds", type=int, default=5, help="CPU: splits and seeds")
    parser.add_argument(
        "--max-iter", type=int, default=200, help="CPU: max_iter (a quick check)"
    )
    parser.add_argument("--samples", type=int, default=200_000, help="GPU: rows")
    parser.add_argument("--epochs", type=int, default=5, help="GPU: epochs per fit")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS to this many threads for every side (threadpoolctl); "
        "default: the library's own setting",
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON")
    args = parser.parse_args(argv)
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads, user_api="blas")
    device = "gpu" if args.gpu else "cpu"
    if args.gpu:
        from gpunn.backends import gpu_status

        cls, reason = gpu_status()
        if cls is None:
            sys.exit(f"--gpu needs a usable GPU: {reason}")
        result = gpu_synthetic(args.samples, args.epochs)
    else:
        result = cpu_digits(args.seeds, args.max_iter)
    report = {
        "machine": machine(device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "case": f"sklearn_vs_gpunn_{device}",
        "blas_threads": args.blas_threads,
        **result,
    }
    _print(result)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = (
            args.out
            / f"sklearn_vs_gpunn_{device}_{time.strftime('%Y%m%d_%H%M%S')}.json"
        )
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
