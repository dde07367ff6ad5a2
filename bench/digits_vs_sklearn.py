"""Digits on the CPU: gpunn against scikit-learn's MLPClassifier, accuracy and time.

    python bench/digits_vs_sklearn.py [--epochs 50] [--seeds 5] [--out DIR]

The same 256-256 ReLU network, Adam lr 1e-3, batch 64, 50 epochs, on the same
standardized 80/20 split per seed; the test accuracy and fit time of each (the CPU
target of the README's "Targets": at least scikit-learn's accuracy in at most 1/5 of its
time). Both run in this one process, alternating, so machine load hits both alike;
compare ratios, not absolute times, across runs. Step throughput against PyTorch and
the GEMM floor is ``gpunn bench``'s job.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gpunn
from gpunn import datasets
from gpunn.layers import Dense


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


def main() -> None:
    from gpunn.bench.machine import machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5, help="splits and seeds")
    args = parser.parse_args()
    d = bench_digits(args.epochs, args.seeds)
    report = {
        "machine": machine("cpu"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "digits": d,
    }
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
        stamp = time.strftime("%Y%m%d_%H%M%S")
        path = args.out / f"digits_vs_sklearn_{stamp}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
