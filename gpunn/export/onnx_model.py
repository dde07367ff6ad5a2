"""ONNX export: :func:`to_onnx` (the ``onnx.ModelProto``) and :func:`export_onnx`
(``model.export(path)``, the file written atomically).

The graph (see :mod:`gpunn.export.trace`) maps the input ``"input"`` of shape
``(batch, n_in)`` to the output ``"output"`` ``(batch, n_out)``, with a dynamic batch
dimension ``"batch"``, and computes what ``predict`` returns: probabilities when the
model ends in a softmax (or a sigmoid), raw outputs otherwise. The ``onnx`` package is
imported only here (``pip install "gpunn[onnx]"``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from gpunn.errors import ArgumentError, ArgumentTypeError
from gpunn.export.trace import (
    INPUT,
    OUTPUT,
    ExportError,
    final_activation,
    trace_model,
)
from gpunn.persistence.atomic import atomic_write

DEFAULT_OPSET = 17  # onnxruntime >= 1.12 loads it; IR version 8
MIN_OPSET = 13  # Softmax over one axis, Gemm, Erf, ... as used here
DTYPES = ("float32", "float64", "float16")
MAX_BYTES = 2**31 - 1  # protobuf's limit on one message: one ONNX file
BATCH = "batch"


def _require_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ModuleNotFoundError(
            'ONNX export needs the onnx package: pip install "gpunn[onnx]"'
        ) from exc
    return onnx


def check_dtype(dtype, model_dtype) -> np.dtype:
    """The export dtype: ``dtype`` (``"float32"``, ``"float64"``, ``"float16"``), or
    the model's when None. bfloat16 raises ExportError (ONNX Runtime has almost no
    bfloat16 kernels), anything else ValueError naming the argument."""
    if dtype is None:
        return np.dtype(model_dtype)
    try:
        name = np.dtype(dtype).name
    except TypeError:  # e.g. "bfloat16" without ml_dtypes
        name = dtype if isinstance(dtype, str) else None
    if name == "bfloat16":
        raise ExportError(
            "dtype='bfloat16' is not exported: ONNX Runtime runs almost no bfloat16 "
            "operators; export a mixed_bfloat16 model with dtype='float16' or "
            "'float32' (its float32 master weights are rounded once)"
        )
    if name not in DTYPES:
        raise ArgumentError(
            f"dtype must be one of {DTYPES} or None (the model's dtype), got {dtype!r}"
        )
    return np.dtype(name)


def check_opset(opset, newest: int | None = None) -> int:
    """``opset`` as an int in ``[MIN_OPSET, newest]`` (``newest``: the installed
    onnx's newest opset; None skips that bound); TypeError / ValueError otherwise."""
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise ArgumentTypeError(f"opset must be an int, got {opset!r}")
    top = "" if newest is None else f" and <= {newest} (the installed onnx's newest)"
    if opset < MIN_OPSET or (newest is not None and opset > newest):
        raise ArgumentError(f"opset must be >= {MIN_OPSET}{top}, got {opset}")
    return int(opset)


def check_path(path) -> str:
    """``path`` as a str; TypeError / ValueError for something that is not a file
    name, IsADirectoryError for a directory. Missing parent directories are fine:
    the write creates them, as for ``model.save``."""
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"path must be a str or path-like, got {type(path).__name__}"
        )
    path = os.fsdecode(os.fspath(path))
    if not path:
        raise ArgumentError("path must be a file name, got ''")
    if os.path.isdir(path):
        raise IsADirectoryError(f"path {path!r} is a directory, expected a file name")
    return path


def to_onnx(model, dtype=None, opset: int = DEFAULT_OPSET):
    """The inference graph of a built model, checked with ``onnx.checker``.

    Args: as :func:`export_onnx`, without the path.

    Returns: the ``onnx.ModelProto`` (``proto.SerializeToString()`` is the file's
    content; ``onnxruntime.InferenceSession`` takes those bytes).
    """
    from gpunn.model import Sequential

    if not isinstance(model, Sequential):
        raise ArgumentTypeError(
            f"model must be a gpunn.Sequential, got {type(model).__name__}"
        )
    dtype = check_dtype(dtype, model.dtype)
    check_opset(opset)
    onnx = _require_onnx()
    opset = check_opset(opset, onnx.defs.onnx_opset_version())
    model._require_built()
    graph = trace_model(model, dtype)
    size = sum(a.nbytes for a in graph.initializers.values())
    if size > MAX_BYTES:
        raise ExportError(
            f"the model's weights take {size / 2**30:.2f} GiB in {dtype.name}, over "
            "the 2 GiB that one ONNX file can hold (protobuf's limit)"
        )
    proto = _model_proto(onnx, model, graph, dtype, opset)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, path, dtype=None, opset: int = DEFAULT_OPSET) -> None:
    """Writes a built model's inference graph to an ONNX file, atomically.

    Args:
        model: a built :class:`~gpunn.Sequential`.
        path: the file to write (str or path-like), e.g. ``"model.onnx"``; replaced
            if it exists (a symbolic link stays, its target is replaced); missing
            parent directories are created.
        dtype: ``"float32"``, ``"float64"`` or ``"float16"``, the dtype of the
            graph's input, weights and output; None keeps the model's (the float32
            master weights of a mixed-precision model). A model exported in a
            narrower dtype has its weights rounded once; ``"float16"`` suits a
            ``mixed_float16`` model served in float16. bfloat16 is refused.
            Default: None.
        opset: the ONNX opset, ``>= 13`` and at most the installed onnx's newest.
            Default: 17 (onnxruntime 1.12 and later).

    Raises:
        NotBuiltError: the model (or a Standardize/Whiten in it) is not built or
            adapted.
        ExportError: a layer or activation that cannot be exported (named),
            bfloat16, or weights over the 2 GiB one ONNX file holds.
        TypeError, ValueError: a bad argument (named); nothing is written.
        OSError: the write failed; an existing file at ``path`` is intact.
        ModuleNotFoundError: onnx is not installed (``pip install
            "gpunn[onnx]"``).
    """
    path = check_path(path)
    proto = to_onnx(model, dtype, opset)
    atomic_write(path, [proto.SerializeToString()])


def metadata(model, dtype: np.dtype) -> dict:
    """The ``gpunn.*`` metadata properties stored in the ONNX file."""
    from gpunn import __version__

    return {
        "gpunn.version": __version__,
        "gpunn.input_dim": str(model.input_dim),
        "gpunn.output_dim": str(model.output_dim),
        "gpunn.input_names": json.dumps([INPUT]),
        "gpunn.output_names": json.dumps([OUTPUT]),
        "gpunn.dtype": dtype.name,
        "gpunn.model_dtype": np.dtype(model.dtype).name,
        "gpunn.final_activation": final_activation(model),
        "gpunn.layers": json.dumps(
            [[layer.name, type(layer).__name__] for layer in model.layers]
        ),
    }


def _model_proto(onnx, model, graph, dtype: np.dtype, opset: int):
    from gpunn import __version__

    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    nodes = [
        helper.make_node(n.op_type, list(n.inputs), list(n.outputs), n.name, **n.attrs)
        for n in graph.nodes
    ]
    body = helper.make_graph(
        nodes,
        "gpunn.Sequential",
        [helper.make_tensor_value_info(INPUT, elem, [BATCH, model.input_dim])],
        [helper.make_tensor_value_info(OUTPUT, elem, [BATCH, model.output_dim])],
        [numpy_helper.from_array(a, name) for name, a in graph.initializers.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        body,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="gpunn",
        producer_version=__version__,
        doc_string=f"gpunn.Sequential {model.input_dim} -> {model.output_dim}: "
        "the values its predict() returns",
    )
    helper.set_model_props(proto, metadata(model, dtype))
    return proto
