"""The ``gpunn`` command: ``gpunn train``, and ``gpunn info`` / ``gpunn warmup``
(:mod:`gpunn.cli_device`)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time

import numpy as np

import gpunn
from gpunn import (
    backends,
    cli_bench,
    cli_device,
    cli_export,
    datasets,
    distributed,
    optim,
    schedules,
)
from gpunn.callbacks import Callback, EarlyStopping
from gpunn.checkpointing import ModelCheckpoint
from gpunn.layers import (
    Activation,
    BatchNorm,
    Dense,
    Dropout,
    Standardize,
    activation_names,
)

MAX_AUTO_CLASSES = 256
SCHEDULES = ["constant", "cosine", "exponential", "polynomial", "step"]


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpunn", description=gpunn.__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--version", action="version", version=f"gpunn {gpunn.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
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
        help="auto: classify when the labels are non-negative integers with at most "
        f"{MAX_AUTO_CLASSES} distinct values, else regress",
    )
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument(
        "--hidden",
        type=_sizes,
        default=[256, 256],
        help="hidden layer sizes, comma-separated (default: 256,256)",
    )
    train.add_argument("--activation", choices=activation_names(), default="relu")
    train.add_argument("--optimizer", choices=optim.names(), default="adam")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument(
        "--weight-decay", type=float, default=None, help="the optimizer's weight_decay"
    )
    train.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="constant",
        help="lr schedule over all updates: cosine/polynomial decay to 0, exponential "
        "to 1%% of lr, step: x0.1 every third of training (default: constant)",
    )
    train.add_argument(
        "--warmup-steps", type=int, default=0, help="linear lr warmup updates first"
    )
    train.add_argument(
        "--dropout", type=float, default=0.0, help="dropout rate after hidden layers"
    )
    train.add_argument(
        "--batch-norm",
        action="store_true",
        help="BatchNorm between each hidden Dense and its activation",
    )
    train.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop when val_loss has not improved for PATIENCE epochs and restore "
        "the best weights (holds out --validation-split)",
    )
    train.add_argument(
        "--validation-split",
        type=float,
        default=None,
        help="fraction of the training data held out for val_ metrics "
        "(default: 0, or 0.1 with --early-stopping)",
    )
    train.add_argument(
        "--clip-norm", type=float, default=None, help="clip the global gradient norm"
    )
    train.add_argument(
        "--accumulate-steps",
        type=int,
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
        "--resume",
        default=None,
        metavar="PATH",
        help="continue from a checkpoint of the same command; --epochs is the total",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--test-size", type=float, default=0.2)
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)
    train.add_argument(
        "--tf32",
        action="store_true",
        help="let float32 matmuls on the GPU use TF32 tensor cores (default: off)",
    )
    cli_device.add_parsers(sub)
    cli_bench.add_parser(sub)
    cli_export.add_parser(sub)
    return parser


def _load(args):
    if args.data is None:
        return datasets.load_digits(), "bundled digits"
    return datasets.load_file(args.data), args.data


def _is_classification(y: np.ndarray, task: str) -> bool:
    if task != "auto":
        return task == "classify"
    if y.dtype.kind not in "iubf" or y.size == 0:
        return False
    integral = y.dtype.kind != "f" or bool(np.all(np.isfinite(y) & (y == np.round(y))))
    return integral and y.min() >= 0 and len(np.unique(y)) <= MAX_AUTO_CLASSES


def _layers(args, n_out: int) -> list:
    found = [Standardize()]  # adapted to the training split: part of a saved model
    for width in args.hidden:
        if args.batch_norm:
            found += [Dense(width), BatchNorm(), Activation(args.activation)]
        else:
            found.append(Dense(width, activation=args.activation))
        if args.dropout:
            found.append(Dropout(args.dropout))
    return found + [Dense(n_out)]


def _optimizer(args, updates: int):
    lr = args.lr
    if args.schedule != "constant":
        lr = schedules.get(args.schedule, **_schedule_args(args, updates))
    if args.warmup_steps:
        lr = schedules.Warmup(lr, args.warmup_steps)
    kwargs = {"lr": lr, "clip_norm": args.clip_norm}
    if args.weight_decay is not None:
        kwargs["weight_decay"] = args.weight_decay
    return optim.get(args.optimizer, **kwargs)


def _schedule_args(args, updates: int) -> dict:
    total = max(updates - args.warmup_steps, 1)
    return {
        "cosine": {"lr": args.lr, "total_steps": total},
        "polynomial": {"lr": args.lr, "total_steps": total},
        "exponential": {"lr": args.lr, "decay": 1 - 0.01 ** (1 / total)},
        "step": {"lr": args.lr, "step_size": max(total // 3, 1)},
    }[args.schedule]


def _callbacks(args) -> tuple[list, float]:
    split = args.validation_split
    if args.early_stopping is None:
        return [], split or 0.0
    stop = EarlyStopping(
        "val_loss", patience=args.early_stopping, restore_best_weights=True
    )
    return [stop], 0.1 if split is None else split


def _quiet(*args, **kwargs) -> None:
    """``print`` on the ranks other than 0."""


class _SampleCounter(Callback):
    """Counts the samples this run trains on (a resumed run trains fewer)."""

    samples = 0

    def on_train_batch_end(self, batch, logs=None):
        self.samples += int((logs or {}).get("size", 0))


def train(args) -> int:
    say = print if distributed.is_primary() else _quiet  # rank 0 alone prints
    (X, y), source = _load(args)
    classify = _is_classification(np.asarray(y), args.task)
    X_tr, X_te, y_tr, y_te = datasets.train_test_split(
        X, y, args.test_size, seed=args.seed, stratify=classify
    )
    n_out = int(np.max(y) + 1) if classify else 1
    model = gpunn.Sequential(
        _layers(args, n_out),
        input_dim=X.shape[1],
        dtype=args.dtype,
        backend=args.device,
        seed=args.seed,
        tf32=args.tf32,
    )
    model.adapt(X_tr)
    callbacks, split = _callbacks(args)
    if args.checkpoint:
        callbacks.append(ModelCheckpoint(args.checkpoint))
    n_fit = len(X_tr) - int(len(X_tr) * split)
    batches = math.ceil(n_fit / args.batch_size)
    per_epoch = math.ceil(batches / max(args.accumulate_steps, 1))
    model.compile(
        "softmax_cross_entropy" if classify else "mse",
        _optimizer(args, args.epochs * per_epoch),
    )
    task = f"{n_out} classes" if classify else "regression"
    say(
        f"data: {source}, {len(X_tr)} train / {len(X_te)} test samples, "
        f"{X.shape[1]} features, {task}"
    )
    say(
        f"model: {X.shape[1]}-{'-'.join(map(str, args.hidden))}-{n_out} "
        f"({model.count_params():,} params, {args.dtype}"
        f"{', tf32' if model.backend.tf32 else ''}) on backend "
        f"{model.backend.name}, {args.optimizer} lr={args.lr} "
        f"schedule={args.schedule}"
    )
    counter = _SampleCounter()
    callbacks.append(counter)
    start = time.perf_counter()
    history = model.fit(
        X_tr,
        y_tr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=args.verbose,
        validation_split=split,
        callbacks=callbacks,
        accumulate_steps=args.accumulate_steps,
        resume_from=args.resume,
    )
    model.backend.synchronize()
    seconds = time.perf_counter() - start
    epochs = len(history.epoch)
    stop = next((c for c in callbacks if isinstance(c, EarlyStopping)), None)
    if stop is not None and stop.stopped_epoch:
        say(
            f"early stopping after {epochs} epochs; restored the weights of epoch "
            f"{stop.best_epoch + 1}"
        )
    result = model.evaluate(X_te, y_te)
    metric = (
        f"test accuracy: {result['accuracy']:.4f}"
        if classify
        else f"test mse: {result['loss']:.6g}"
    )
    say(f"{metric} (test loss {result['loss']:.4f})")
    samples = np.array([float(counter.samples)])
    if distributed.enabled():  # every rank counted its own shards
        distributed.world().allreduce_host_(samples)
    rate = samples[0] / seconds
    say(f"train time: {seconds:.2f}s, {rate:,.0f} samples/s")
    if args.save and distributed.is_primary():
        model.save(args.save)
        say(f"saved the model to {args.save}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("gpunn")
    if distributed.launched_size() > 1 and distributed.rank() != 0:
        handler = logging.NullHandler()  # rank 0 alone says which backend it picked
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        if args.command == "train":
            return train(args)
        if args.command == "bench":
            return cli_bench.bench(args)
        if args.command == "export":
            return cli_export.export(args)
        return cli_device.COMMANDS[args.command](args)
    except (gpunn.BackendUnavailableError, ValueError, TypeError, OSError) as exc:
        print(f"gpunn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        logger.removeHandler(handler)
