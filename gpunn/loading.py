"""``gpunn.load``: a model rebuilt from a file that ``model.save`` (or
``ModelCheckpoint``) wrote. :mod:`gpunn.persistence.model_io` reads and checks the
file as plain data; the model is built here from what it returns."""

from __future__ import annotations

import os

from gpunn.checks import check_path
from gpunn.errors import CheckpointError
from gpunn.model import Sequential
from gpunn.persistence import model_io


def load(path, backend=None, *, compile: bool = True) -> Sequential:
    """Loads a model written by ``model.save(path)``.

    The model is rebuilt from its configuration on ``backend``, its weights and
    layer state are set bitwise from the file, and it is compiled when the file has
    a compile configuration (a fresh optimizer: step 0, zero moments).

    Args:
        path: the file (str or path-like).
        backend: ``"cpu"``, ``"gpu"``, ``"auto"`` or None (env ``GPUNN_BACKEND``,
            else ``"auto"``), as for :class:`~gpunn.Sequential`.
        compile: compile the model when the file says how. Default: True.

    Returns: the :class:`~gpunn.Sequential`.

    Raises:
        CheckpointError: the file is corrupt or unsafe (its subclasses
            :class:`~gpunn.errors.CorruptFileError` /
            :class:`~gpunn.errors.UnsafeFileError`), not a model file, holds an
            invalid configuration, non-finite weights, or tensors that do not fit
            its architecture (the message lists the missing, unexpected and
            mismatched entries). Every message names the path.
        OSError: the file cannot be read.
    """
    path = os.fspath(check_path("path", path))
    config, tensors, state = model_io.read(path, compile)
    try:
        model = Sequential.from_config(config, backend)
    except model_io.CONFIG_ERRORS as exc:
        raise CheckpointError(f"{path}: invalid model configuration: {exc}") from exc
    if not model.built:
        raise CheckpointError(f"{path}: the model configuration has no input_dim")
    layers = [layer.name for layer in model.layers]
    slots = model.arena.slots
    model_io.check_tensors(slots, model.dtype, tensors, state, layers, path)
    model.set_weights([tensors[s.key] for s in slots])
    model_io.set_layer_states(model.layers, tensors, state, path)
    return model
