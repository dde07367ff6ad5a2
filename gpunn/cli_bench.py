"""``gpunn bench``: gpunn's training throughput side by side with PyTorch and others
(the runner is :mod:`gpunn.bench.runner`; see the README's "Performance")."""

from __future__ import annotations

import argparse
from pathlib import Path


def _names(allowed):
    """An argparse type: comma-separated names, each one of ``allowed``."""

    def parse(text: str) -> tuple:
        names = tuple(s.strip() for s in text.split(",") if s.strip())
        bad = [n for n in names if n not in allowed]
        if not names or bad:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated names from {', '.join(allowed)}, "
                f"got {text!r}"
            )
        return names

    return parse


def _batches(text: str) -> tuple:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive ints like 256,1024, got {text!r}"
        )
    return sizes


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def add_parser(sub) -> None:
    from gpunn.bench import contenders, models

    bench = sub.add_parser(
        "bench",
        help="benchmark training steps against PyTorch and others",
        description=(
            "Trains the standard models side by side with each contender found "
            "installed, from the same weights on the same data, checks that their "
            "first-step losses agree, then times them. Prints a table; writes JSON, "
            "the table and a PNG plot into --out."
        ),
    )
    bench.add_argument(
        "--models",
        type=_names(tuple(models.MODELS)),
        default=None,
        help="comma-separated from tiny,A,B (default: tiny,A on the "
        "CPU, tiny,A,B on the GPU)",
    )
    bench.add_argument(
        "--batch-sizes",
        type=_batches,
        default=None,
        help="default: 64,256,1024 on the CPU, 256,1024,4096,16384,65536 on the GPU",
    )
    bench.add_argument(
        "--precision",
        type=_names(tuple(models.PRECISIONS)),
        default=("fp32",),
        help="comma-separated from fp32 (TF32 off), tf32 (GPU only), bf16 and fp16 "
        "(mixed precision: gpunn's policies against torch.autocast, GradScaler for "
        "fp16); default fp32",
    )
    bench.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default="auto",
        help="default: the GPU when one is usable, else the CPU",
    )
    bench.add_argument(
        "--against",
        type=_names(contenders.AGAINST),
        default=None,
        help="comma-separated from torch,torch-compile,numpy,sklearn "
        "(default: all that are installed and run on the device)",
    )
    bench.add_argument(
        "--steps",
        type=_positive,
        default=None,
        help="timed steps per side and case (default 20)",
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="folder for the JSON, table and plot (default: ./bench-results)",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: model tiny, two batch sizes, 5 steps, "
        "against torch and numpy (under a minute on 2 CPU cores)",
    )
    bench.add_argument(
        "--no-check-finite",
        dest="check_finite",
        action="store_false",
        help="time gpunn without its per-step finite check",
    )


def bench(args) -> int:
    from gpunn.bench import report, runner

    options = runner.Options(
        device=args.device,
        models=args.models,
        batch_sizes=args.batch_sizes,
        precisions=args.precision,
        against=args.against,
        steps=args.steps,
        quick=args.quick,
        check_finite=args.check_finite,
    )
    results = runner.run(options)
    print(report.table(results), end="")
    written = report.save(results, args.out)
    for kind, where in written.items():
        print(f"{kind}: {where}")
    return 0
