"""The flags of ``gpunn train``, their types and the error wording of the command.

Each flag value is checked when the command line is parsed, so a bad one exits with
status 2 and argparse's ``argument --flag: ...`` message before anything runs. An
error raised later by the library names its Python argument (``batch_size``,
``backend='cpu'``); :func:`cli_message` rewrites those names as the flags that set
them.
"""

from __future__ import annotations

import argparse
import math
import re

from gpunn import backends, optim
from gpunn.layers import activation_names

MAX_AUTO_CLASSES = 256
MIN_AUTO_PER_CLASS = 5  # fewer samples per label on average looks like a regression
SCHEDULES = ["constant", "cosine", "exponential", "polynomial", "step"]


def _number(text: str, kind):
    try:
        return kind(text)
    except ValueError:
        name = "an int" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None


def int_at_least(lo: int):
    """An argparse type: an int >= ``lo``."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected an int >= {lo}, got {text!r}")
        return value

    parse.__name__ = f"int >= {lo}"
    return parse


def real_in(lo: float, hi: float = math.inf, lo_open=False, hi_open=False):
    """An argparse type: a finite number in the interval (ends open or closed)."""
    left = "(" if lo_open else "["
    right = ")" if hi_open or math.isinf(hi) else "]"
    span = f"{left}{lo:g}, {hi:g}{right}"

    def parse(text: str) -> float:
        value = _number(text, float)
        bad = not math.isfinite(value)
        bad |= value <= lo if lo_open else value < lo
        bad |= value >= hi if hi_open else value > hi
        if bad:
            raise argparse.ArgumentTypeError(
                f"expected a finite number in {span}, got {text!r}"
            )
        return value

    parse.__name__ = f"number in {span}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
positive_real = real_in(0, lo_open=True)
non_negative_real = real_in(0)
fraction = real_in(0, 1, hi_open=True)  # [0, 1)
open_fraction = real_in(0, 1, lo_open=True, hi_open=True)  # (0, 1)

# Python argument names in library errors -> the flags of ``gpunn train`` that set them
FLAGS = {
    "batch_size": "--batch-size",
    "epochs": "--epochs",
    "validation_split": "--validation-split",
    "accumulate_steps": "--accumulate-steps",
    "test_size": "--test-size",
    "clip_norm": "--clip-norm",
    "weight_decay": "--weight-decay",
    "warmup_steps": "--warmup-steps",
    "resume_from": "--resume",
    "keep_last": "--keep-last",
}
_BACKEND = re.compile(r"backend=['\"](\w+)['\"]")
_VALUES = re.compile(r"\b(precision|dtype)=['\"](\w+)['\"]")  # train's own flags
_NAMES = re.compile(r"\b(" + "|".join(FLAGS) + r")\b")


def cli_message(message: str, command: str = "train") -> str:
    """``message`` with Python argument names as the flags of ``command`` that set
    them: ``backend='cpu'`` -> ``--device cpu`` (train, bench), ``batch_size`` ->
    ``--batch-size`` and ``dtype='float64'`` -> ``--dtype float64`` (train)."""
    if command not in ("train", "bench"):
        return message
    message = _BACKEND.sub(lambda m: f"--device {m.group(1)}", message)
    if command != "train":
        return message
    message = _VALUES.sub(lambda m: f"--{m.group(1)} {m.group(2)}", message)
    return _NAMES.sub(lambda m: FLAGS[m.group(1)], message)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints like 256,256, got {text!r}"
        ) from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


def add_train_parser(sub) -> None:
    """Adds ``gpunn train`` and its flags to the subcommands ``sub``."""
    train = sub.add_parser("train", help="train an MLP (default: the bundled digits)")
    train.add_argument(
        "--device",
        choices=backends.BACKEND_NAMES,
        default=None,
        help="where to train (default: env GPUNN_BACKEND, else auto)",
    )
    train.add_argument(
        "--data",
        default=None,
        help=".npz with arrays X, y or .csv with the label last "
        "(default: bundled digits)",
    )
    train.add_argument(
        "--task",
        choices=["auto", "classify", "regress"],
        default="auto",
        help="auto: classify when the labels are the integers 0..K-1 (K at most "
        f"{MAX_AUTO_CLASSES}, about {MIN_AUTO_PER_CLASS}+ samples each), regress "
        "when they are not integers or negative; other integer targets need --task",
    )
    train.add_argument("--epochs", type=positive_int, default=50)
    train.add_argument("--batch-size", type=positive_int, default=64)
    train.add_argument(
        "--hidden",
        type=_sizes,
        default=[256, 256],
        help="hidden layer sizes, comma-separated (default: 256,256)",
    )
    train.add_argument("--activation", choices=activation_names(), default="relu")
    train.add_argument("--optimizer", choices=optim.names(), default="adam")
    train.add_argument("--lr", type=positive_real, default=1e-3)
    train.add_argument(
        "--weight-decay",
        type=non_negative_real,
        default=None,
        help="the optimizer's weight_decay",
    )
    train.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="constant",
        help="lr schedule over all updates: cosine/polynomial decay to 0, exponential "
        "to 1%% of lr, step: x0.1 every third of training (default: constant)",
    )
    train.add_argument(
        "--warmup-steps",
        type=non_negative_int,
        default=0,
        help="linear lr warmup updates first",
    )
    train.add_argument(
        "--dropout", type=fraction, default=0.0, help="dropout rate after hidden layers"
    )
    train.add_argument(
        "--batch-norm",
        action="store_true",
        help="BatchNorm between each hidden Dense and its activation",
    )
    train.add_argument(
        "--early-stopping",
        type=non_negative_int,
        default=None,
        metavar="PATIENCE",
        help="stop when val_loss has not improved for PATIENCE epochs and restore "
        "the best weights (holds out --validation-split)",
    )
    train.add_argument(
        "--validation-split",
        type=fraction,
        default=None,
        help="fraction of the training data held out for val_ metrics "
        "(default: 0, or 0.1 with --early-stopping)",
    )
    train.add_argument(
        "--clip-norm",
        type=positive_real,
        default=None,
        help="clip the global gradient norm",
    )
    train.add_argument(
        "--accumulate-steps",
        type=positive_int,
        default=1,
        help="average the gradients of this many batches per update",
    )
    train.add_argument(
        "--save",
        default=None,
        metavar="PATH",
        help="save the trained model (with its input standardization) to a "
        ".safetensors file; load it with gpunn.load(PATH)",
    )
    train.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="write a training checkpoint at each epoch end (PATH may hold {epoch})",
    )
    train.add_argument(
        "--keep-last",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --checkpoint holding {epoch}: keep only the N newest checkpoints "
        "this run wrote (default: keep all)",
    )
    train.add_argument(
        "--resume",
        default=None,
        metavar="PATH",
        help="continue from a checkpoint of the same command; --epochs is the total",
    )
    train.add_argument("--seed", type=non_negative_int, default=0)
    train.add_argument("--test-size", type=open_fraction, default=0.2)
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)
    train.add_argument(
        "--tf32",
        action="store_true",
        help="let float32 matmuls on the GPU use TF32 tensor cores (default: off)",
    )
    train.add_argument(
        "--precision",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        default="float32",
        help="mixed_bfloat16 / mixed_float16: 16-bit layers over float32 weights "
        "(mixed_float16 with dynamic loss scaling); needs --dtype float32 "
        "(default: float32)",
    )
