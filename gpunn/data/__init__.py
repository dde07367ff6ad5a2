"""The input pipeline: an epoch is a sequence of device batches.

``fit``, ``evaluate`` and ``predict`` take their data through :func:`source_for`,
which picks one of three sources (:mod:`gpunn.data.sources`):

- arrays (NumPy, CuPy, or any tensor with ``__dlpack__``): checked once, moved to
  the device once, batches sliced or gathered there (the fastest path, unchanged);
- a memory-mapped array (``numpy.memmap``, as ``numpy.load(path, mmap_mode="r")``
  returns): read in chunks of about :data:`CHUNK_BYTES`, never whole in host or
  device memory; shuffled by chunk permutation plus in-chunk permutation
  (:mod:`gpunn.data.chunks`); each chunk checked as it is read;
- an iterable of ``(x, y)`` / ``(x, y, sample_weight)`` batches (a generator, a
  ``torch.utils.data.DataLoader``...), Keras-style, with ``steps_per_epoch`` /
  ``validation_steps`` / ``steps`` where its length is unknown.

Streamed sources are read on a background thread and handed to the device by the
backend's prefetcher (:meth:`~gpunn.backends.NumpyBackend.prefetch`: on the GPU,
pinned buffers and a copy stream overlapping the previous batch's compute).
"""

from __future__ import annotations

import copy

import numpy as np

from gpunn import inputs
from gpunn.backends import get_backend
from gpunn.checks import check_real
from gpunn.data import sources, weights
from gpunn.data.checks import PieceChecker
from gpunn.data.chunks import epoch_order
from gpunn.data.sources import ArraySource, ChunkedSource, IterableSource, is_memmap
from gpunn.errors import ArgumentError, InvalidInputError

__all__ = [
    "ArraySource",
    "ChunkedSource",
    "IterableSource",
    "chunk_bytes",
    "epoch_order",
    "is_batches",
    "is_memmap",
    "set_chunk_bytes",
    "source_for",
    "split",
    "with_class_weight",
]


def chunk_bytes() -> int:
    """Bytes of features (in the model's dtype) per chunk of a memory-mapped array;
    a chunk is also a whole number of batches. Default: 64 MiB."""
    return sources.CHUNK_BYTES


def set_chunk_bytes(n: int) -> None:
    """Sets :func:`chunk_bytes` for later ``fit``/``evaluate``/``predict`` calls:
    larger chunks shuffle better and hold more memory. A checkpoint records the
    chunk's rows; a mid-epoch resume needs the same."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ArgumentError(f"chunk bytes must be an int >= 1, got {n!r}")
    sources.CHUNK_BYTES = int(n)


def is_batches(x) -> bool:
    """Whether ``x`` is an iterable of batches (a generator, an iterator, a
    DataLoader) rather than an array (anything NumPy, DLPack or CUDA can read,
    lists and tuples included)."""
    if isinstance(x, (np.ndarray, list, tuple, str, bytes, dict)):
        return False
    array_like = ("__array__", "__dlpack__", "__cuda_array_interface__", "toarray")
    if any(hasattr(x, name) for name in array_like):
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def source_for(
    model,
    x,
    y=None,
    w=None,
    names=("X", "y", "sample_weight"),
    *,
    targets=True,
    steps=None,
    batch_size=32,
    training=False,
    steps_name="steps",
):
    """The source of ``(x, y, w)`` for ``model``, checked as far as can be without
    reading a streamed source; builds an unbuilt model from the data's width.

    Args:
        model: the model (compiled when ``targets``).
        x, y, w: features, targets, sample weights (``y``/``w`` None for an
            iterable, whose batches carry them, and for ``predict``).
        names: the argument names, for errors.
        targets: whether targets are needed (fit, evaluate) or not (predict).
        steps: batches per pass of an iterable (None: until it ends).
        batch_size: the batch size it will be read with.
        training: whether batches train (a BatchNorm needs 2 rows each).
        steps_name: the argument that gave ``steps``, for errors.
    """
    if steps is not None and not is_batches(x):
        raise ArgumentError(
            f"{steps_name}={steps} is for an iterable of batches; {names[0]} is a "
            f"{type(x).__name__}, whose length is known"
        )
    if is_batches(x):
        return _iterable(model, x, y, w, names, targets, steps, training)
    if targets and y is None:
        raise ArgumentError(
            f"{names[1]} is needed with {names[0]} given as a {type(x).__name__} "
            "(only an iterable of (x, y) batches carries its own targets)"
        )
    if is_memmap(x):
        return _chunked(model, (x, y, w), names, targets, batch_size)
    if not targets:
        return ArraySource(model, model._inputs(x, names[0]))
    return ArraySource(model, *model._dataset(x, y, w, names))


def with_class_weight(model, source, class_weight):
    """``source`` whose sample weights are multiplied by ``class_weight``'s weight
    of each sample's class (:mod:`gpunn.data.weights`); a new source for arrays and
    memory-mapped arrays, the same iterable source."""
    vector = weights.vector(class_weight, model.loss, model.output_dim, model.dtype)
    if isinstance(source, ArraySource):
        backend, (X, y, w) = model.backend, source.data
        w = weights.apply(backend.xp, backend.asarray(vector), model.loss, y, w)
        return ArraySource(model, X, y, w)
    checker = copy.copy(source.checker)
    checker.class_weight = vector
    if isinstance(source, IterableSource):
        source.checker = checker
        return source
    return ChunkedSource(
        model, source.arrays, checker, source.chunk_rows, 1, source.offset
    )


def split(model, source, validation_data, validation_split, steps, batch_size):
    """``(training source, validation source or None)`` of ``fit``: from
    ``validation_data`` (arrays, memory-mapped arrays or an iterable of batches,
    ``steps`` batches of it per evaluation) or the last ``validation_split`` of the
    training rows (arrays and memory-mapped arrays, as Keras)."""
    validation_split = check_real(
        "validation_split", validation_split, 0, 1, hi_open=True
    )
    if validation_split and validation_data is not None:
        raise ArgumentError("pass validation_data or validation_split, not both")
    if steps is not None and (
        validation_data is None or not is_batches(validation_data)
    ):
        raise ArgumentError(
            "validation_steps is for validation_data given as an iterable of "
            f"batches, got validation_steps={steps}"
        )
    if validation_data is not None:
        return source, _validation_source(model, validation_data, steps, batch_size)
    if not validation_split:
        return source, None
    if source.n_samples is None:
        raise ArgumentError(
            "validation_split needs arrays (their last rows are held out); with an "
            "iterable of batches pass validation_data"
        )
    n = source.n_samples
    cut = n - int(n * validation_split)  # the last samples, as in Keras
    if cut in (0, n):
        raise ArgumentError(
            f"validation_split={validation_split} leaves no samples for training or "
            f"validation with {n} samples"
        )
    return source.rows(0, cut), source.rows(cut, n)


def _validation_source(model, validation_data, steps, batch_size):
    names = ("validation_data[0]", "validation_data[1]", "validation_data[2]")
    if is_batches(validation_data):
        return source_for(model, validation_data, names=names, steps=steps)
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (
        2,
        3,
    ):
        raise ArgumentError(
            "validation_data must be (X_val, y_val), (X_val, y_val, "
            "sample_weight_val) or an iterable of batches, got "
            f"{type(validation_data).__name__}"
        )
    return source_for(model, *validation_data, names=names, batch_size=batch_size)


def _min_rows(model, training: bool) -> int:
    return max(layer.min_train_batch for layer in model.layers) if training else 1


def _prepared(model, targets: bool, width: int) -> None:
    """Checks the model can take data of ``width`` features, then builds it."""
    if targets:
        model._require_compiled()
    model.backend.set_tf32(model.tf32)
    if model.built:
        model.arena.params_changed()
    else:
        model.build(width)
    if targets:
        inputs.loss_options(model.backend, model.loss, model.dtype)


def _chunked(model, arrays, names, targets, batch_size):
    X, y, w = arrays
    inputs.check_features_layout(X, model.input_dim, names[0])
    n = X.shape[0]
    if targets:
        y = _host_or_memmap(y, names[1])
        inputs.check_count(y, n, names[1])
        w = None if w is None else _host_or_memmap(w, names[2])
        if w is not None and tuple(w.shape) != (n,):
            raise InvalidInputError(
                f"{names[2]} must have shape ({n},), one weight per sample, got "
                f"shape {tuple(w.shape)}"
            )
    else:
        y = w = None
    _prepared(model, targets, X.shape[1])
    checker = PieceChecker(model, names, targets)
    return ChunkedSource(model, (X, y, w), checker, batch_size=batch_size)


def _host_or_memmap(v, name: str):
    if v is None:
        raise InvalidInputError(f"{name} is needed with a memory-mapped X")
    return v if is_memmap(v) else inputs.host_or_device(v, name, get_backend("cpu"))


def _iterable(model, data, y, w, names, targets, steps, training):
    if y is not None or w is not None:
        raise ArgumentError(
            f"{names[1]} and {names[2]} must be None when {names[0]} is an "
            "iterable of batches: each batch carries them, (x, y) or (x, y, "
            "sample_weight)"
        )
    checker = PieceChecker(model, names, targets, None, _min_rows(model, training))
    source = IterableSource(model, data, checker, steps)
    first = source.peek()
    if first is None:
        raise InvalidInputError(f"{names[0]} yielded no batch")
    name = f"the first batch of {names[0]}"
    x = inputs.host_or_device(first[0], name, get_backend("cpu"))
    inputs.check_features_layout(x, model.input_dim, name)
    _prepared(model, targets, x.shape[1])
    return source
