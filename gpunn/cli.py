"""The ``gpunn`` command: ``gpunn train``, and ``gpunn info`` / ``gpunn warmup``
(:mod:`gpunn.cli_device`)."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time

import numpy as np

import gpunn
from gpunn import (
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
from gpunn.cli_args import (
    MAX_AUTO_CLASSES,
    MIN_AUTO_PER_CLASS,
    add_train_parser,
    cli_message,
)
from gpunn.layers import (
    Activation,
    BatchNorm,
    Dense,
    Dropout,
    Standardize,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpunn", description=gpunn.__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--version", action="version", version=f"gpunn {gpunn.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    cli_device.add_parsers(sub)
    cli_bench.add_parser(sub)
    cli_export.add_parser(sub)
    return parser


def _load(args):
    if args.data is None:
        return datasets.load_digits(), "bundled digits"
    return datasets.load_file(args.data), args.data


def _is_classification(y: np.ndarray, task: str) -> bool:
    """Whether to classify: ``--task``, or with ``auto`` from the labels. Integer
    targets that are not clearly class labels (0..K-1, K small, several samples
    each) raise ValueError asking for ``--task``, rather than becoming K classes."""
    if task != "auto":
        return task == "classify"
    if y.dtype.kind not in "iubf" or y.size == 0:
        return False
    integral = y.dtype.kind != "f" or bool(np.all(np.isfinite(y) & (y == np.round(y))))
    if not integral or y.min() < 0:
        return False
    values = np.unique(y)
    dense = values[-1] == len(values) - 1  # exactly 0..K-1
    enough = y.size >= MIN_AUTO_PER_CLASS * len(values) or len(values) <= 2
    if dense and len(values) <= MAX_AUTO_CLASSES and enough:
        return True
    raise ValueError(
        f"--task: the targets are {len(values)} distinct non-negative integers "
        f"(from {values[0]:g} to {values[-1]:g}, {y.size} samples): that may be "
        "class labels or a regression target; pass --task classify or --task regress"
    )


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

    writes_weights = False  # reads the model only

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
        precision=args.precision,
    )
    model.adapt(X_tr)
    callbacks, split = _callbacks(args)
    if args.keep_last is not None and not args.checkpoint:
        raise ValueError("--keep-last needs --checkpoint")
    if args.checkpoint:
        callbacks.append(ModelCheckpoint(args.checkpoint, keep_last=args.keep_last))
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
        f"{', ' + args.precision if model.policy.mixed else ''}"
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


class _StdoutHandler(logging.StreamHandler):
    """Logs to stdout; a closed pipe (``gpunn train | head``) ends the command
    quietly instead of printing a logging error."""

    def handleError(self, record) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            raise sys.exc_info()[1]
        super().handleError(record)


def _pipe_closed() -> int:
    """The reader of stdout went away (``gpunn info | head -1``): no traceback, and
    no second error when Python flushes stdout at exit. Returns 128 + SIGPIPE, the
    status of a command ended by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # a bad flag: SystemExit(2) naming it
    handler = _StdoutHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("gpunn")
    if distributed.launched_size() > 1 and distributed.rank() != 0:
        handler = logging.NullHandler()  # rank 0 alone says which backend it picked
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        code = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _pipe_closed()
    except (gpunn.BackendUnavailableError, ValueError, TypeError, OSError) as exc:
        print(f"gpunn {args.command}: error: {_said(args, exc)}", file=sys.stderr)
        return 2
    except gpunn.GpunnError as exc:  # training failed (NonFiniteError, out of memory)
        print(f"gpunn {args.command}: error: {_said(args, exc)}", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)


def _run(args) -> int:
    if args.command == "train":
        return train(args)
    if args.command == "bench":
        return cli_bench.bench(args)
    if args.command == "export":
        return cli_export.export(args)
    return cli_device.COMMANDS[args.command](args)


def _said(args, exc: Exception) -> str:
    """The error's message in the command's words (flags, not Python arguments)."""
    return cli_message(str(exc), args.command)
