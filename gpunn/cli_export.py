"""``gpunn export MODEL.safetensors model.onnx``: a saved model's inference graph as an
ONNX file (:func:`gpunn.export.export_onnx`; needs ``pip install "gpunn[onnx]"``)."""

from __future__ import annotations

import argparse
import sys

from gpunn.errors import NotBuiltError
from gpunn.export.onnx_model import (
    DEFAULT_OPSET,
    DTYPES,
    check_dtype,
    check_opset,
    check_path,
    export_onnx,
)


def _dtype(text: str) -> str:
    try:
        return check_dtype(text, None).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _opset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
    try:
        import onnx  # the upper bound is the installed onnx's newest opset
    except ImportError:
        newest = None  # the export says what to install
    else:
        newest = onnx.defs.onnx_opset_version()
    try:
        return check_opset(value, newest)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub) -> None:
    export = sub.add_parser(
        "export",
        help="export a saved model to ONNX for deployment",
        description=(
            "Writes the inference graph of a model saved with model.save (or gpunn "
            "train --save, or a ModelCheckpoint file) to an ONNX file: input "
            "'input' (batch, n_in) with a dynamic batch, output 'output', the "
            "values predict returns. Needs pip install 'gpunn[onnx]'."
        ),
    )
    export.add_argument("model", metavar="MODEL", help="the .safetensors model file")
    export.add_argument("output", metavar="OUTPUT", help="the .onnx file to write")
    export.add_argument(
        "--dtype",
        type=_dtype,
        default=None,
        help=f"{' or '.join(DTYPES)} (default: the model's dtype)",
    )
    export.add_argument(
        "--opset",
        type=_opset,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, >= 13 (default: {DEFAULT_OPSET}, onnxruntime >= 1.12)",
    )


def export(args) -> int:
    """Loads ``args.model`` on the CPU and exports it; 0 on success, 2 when the
    model cannot be exported, 1 when onnx is missing."""
    import gpunn  # local: the package imports this module

    output = check_path(args.output)  # before loading: a typo fails fast
    model = gpunn.load(args.model, backend="cpu", compile=False)
    try:
        export_onnx(model, output, args.dtype, args.opset)
    except (NotBuiltError, ModuleNotFoundError) as exc:
        print(f"gpunn export: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, NotBuiltError) else 1
    dtype = args.dtype or model.dtype.name
    print(
        f"exported {args.model} ({model.input_dim} -> {model.output_dim}, "
        f"{model.count_params():,} parameters) to {output}: ONNX opset "
        f"{args.opset}, {dtype}"
    )
    return 0
