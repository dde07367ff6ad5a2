"""``python -m gpunn.accel [--dtype D] [--report] (script.py | -m module) [args]``:
runs a program with scikit-learn's MLPs on gpunn (see :mod:`gpunn.accel`)."""

from __future__ import annotations

import argparse
import atexit
import os
import runpy
import sys

import gpunn.accel


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpunn.accel",
        usage="python -m gpunn.accel [--dtype D] [--report] "
        "(script.py | -m module) [args ...]",
        description="Run a Python program with scikit-learn's MLPClassifier and "
        "MLPRegressor on gpunn.",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="dtype of estimators left at dtype=None (default: the input's, as "
        "scikit-learn)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="print which fits ran on gpunn and which on scikit-learn at exit",
    )
    return parser


def split(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """``(own options, module or None, program argv)``: the program starts at
    ``-m module`` or at the first argument that is not one of ours."""
    own, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            if i + 1 == len(argv):
                _parser().error("-m needs a module name")
            return own, argv[i + 1], [argv[i + 1], *argv[i + 2 :]]
        if arg.startswith("-m") and len(arg) > 2:  # -mpytest, as python takes it
            return own, arg[2:], [arg[2:], *argv[i + 1 :]]
        if not arg.startswith("-"):
            return own, None, argv[i:]
        own.append(arg)
        if arg == "--dtype" and i + 1 < len(argv):
            own.append(argv[i + 1])
            i += 1
        i += 1
    return own, None, []


def main(argv=None) -> None:
    own, module, program = split(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(own)
    if module is None and not program:
        _parser().error("give a script (script.py) or a module (-m module)")
    gpunn.accel.install(dtype=args.dtype)
    if args.report:
        atexit.register(gpunn.accel.report, lambda text: print(text, file=sys.stderr))
    sys.argv = program
    if module is not None:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(program[0])))
        runpy.run_path(program[0], run_name="__main__")


if __name__ == "__main__":
    main()
