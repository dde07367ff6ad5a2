"""Training throughput streaming from a memory-mapped file against in-memory arrays.

    python bench/streaming_vs_memory.py [--device cpu|gpu] [--batch-size N]
        [--batches N] [--epochs N] [--rounds N] [--tf32] [--out DIR]

Model A (784-1024-1024-10, ReLU, Adam, softmax cross-entropy, float32), synthetic
data written once to a ``.npy`` file. Each round fits the same model twice, in turns:
on the arrays in memory (moved to the device once per fit) and on the file opened
with ``numpy.load(path, mmap_mode="r")`` (read in chunks on a background thread; on the
GPU through pinned buffers and a copy stream). Both shuffle. The throughput of a fit
is its samples over the median epoch time, the first epoch left out (warm-up, kernel
compiles, the in-memory copy to the device); an epoch ends when its logs are read,
which waits for the device. The file is in the page cache after the first read, so
this measures the pipeline (reading, checking, casting, the host-to-device copy and
their overlap with compute), not the disk.

The goal on the GPU: streaming costs under 10% at model A, batch 4096
(``streaming / in-memory >= 0.9``). Compare ratios within one run: CPU timings move
3-4x with machine load, which hits both sides alike when they alternate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import gpunn
from gpunn.callbacks import Callback
from gpunn.layers import Dense

WIDTHS = (784, 1024, 1024, 10)  # model A


class EpochTimes(Callback):
    """Wall time of each epoch, from its first batch to its logs (read from the
    device, so queued GPU work is done)."""

    def __init__(self):
        self.seconds, self._start = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def model_a(device: str, tf32: bool) -> gpunn.Sequential:
    layers = [Dense(w, activation="relu") for w in WIDTHS[1:-1]] + [Dense(WIDTHS[-1])]
    model = gpunn.Sequential(layers, backend=device, seed=0, tf32=tf32)
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-3))
    return model


def synthetic(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of model A's width, written to ``path`` in pieces; returns the
    in-memory copies."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, WIDTHS[0]), dtype=np.float32)
    y = rng.integers(0, WIDTHS[-1], n)
    np.save(path / "X.npy", X)
    np.save(path / "y.npy", y)
    return X, y


def one_fit(model, X, y, batch_size: int, epochs: int) -> float:
    """Samples per second of the median epoch after the first."""
    times = EpochTimes()
    model.fit(X, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[times])
    return len(X) / statistics.median(times.seconds[1:])


def run(device: str, batch_size: int, batches: int, epochs: int, rounds: int, tf32):
    n = batch_size * batches
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        X, y = synthetic(path, n)
        Xm = np.load(path / "X.npy", mmap_mode="r", allow_pickle=False)
        ym = np.load(path / "y.npy", mmap_mode="r", allow_pickle=False)
        memory, streaming = [], []
        for _ in range(rounds):  # in turns, so load hits both alike
            memory.append(one_fit(model_a(device, tf32), X, y, batch_size, epochs))
            streaming.append(one_fit(model_a(device, tf32), Xm, ym, batch_size, epochs))
    ratios = [s / m for s, m in zip(streaming, memory)]
    return {
        "model": "A " + "-".join(map(str, WIDTHS)),
        "device": device,
        "tf32": tf32,
        "batch_size": batch_size,
        "samples": n,
        "epochs": epochs,
        "rounds": rounds,
        "chunk_bytes": gpunn.data.chunk_bytes(),
        "in_memory_samples_per_s": memory,
        "streaming_samples_per_s": streaming,
        "streaming_over_in_memory": ratios,
        "median_ratio": statistics.median(ratios),
    }


def main() -> None:
    from gpunn.bench.machine import machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="default: 1024 on the CPU, 4096 on the GPU",
    )
    parser.add_argument(
        "--batches",
        type=int,
        default=None,
        help="batches per epoch (default: 24 CPU, 128 GPU)",
    )
    parser.add_argument(
        "--epochs", type=int, default=4, help=">= 2: the first is left out"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tf32", action="store_true", help="TF32 matmuls (GPU)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON")
    args = parser.parse_args()
    if args.epochs < 2 or args.rounds < 1:
        parser.error(
            f"--epochs must be >= 2 (the first is a warm-up) and --rounds >= 1, got "
            f"--epochs {args.epochs} --rounds {args.rounds}"
        )
    gpu = args.device == "gpu"
    batch_size = args.batch_size or (4096 if gpu else 1024)
    batches = args.batches or (128 if gpu else 24)
    result = run(args.device, batch_size, batches, args.epochs, args.rounds, args.tf32)
    report = {
        "machine": machine(args.device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "streaming_vs_memory": result,
    }
    print(
        f"{result['model']} on {args.device}, batch {batch_size}, {result['samples']} "
        f"samples, {args.epochs} epochs (first left out), {args.rounds} rounds:"
    )
    for m, s, r in zip(
        result["in_memory_samples_per_s"],
        result["streaming_samples_per_s"],
        result["streaming_over_in_memory"],
    ):
        print(
            f"  in memory {m:10.0f} samples/s   memory-mapped {s:10.0f}   ratio {r:.3f}"
        )
    verdict = "goal met" if result["median_ratio"] >= 0.9 else "goal not met"
    goal = f" ({verdict}: >= 0.9 at batch 4096 on the GPU)" if gpu else ""
    print(f"  median streaming / in-memory = {result['median_ratio']:.3f}{goal}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d_%H%M%S")
        path = args.out / f"streaming_vs_memory_{args.device}_{stamp}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
