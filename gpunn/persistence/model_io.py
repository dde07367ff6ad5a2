"""Whole models in one safetensors file: ``model.save(path)`` and ``gpunn.load(path)``.

The file (see :mod:`gpunn.persistence.safetensors`) holds:

- every parameter as a tensor named ``<layer>.<parameter>``, in the model's dtype
  and with the shape ``get_weights`` gives: ``dense_0.kernel`` ``(n_in, units)``
  (PyTorch's ``nn.Linear.weight`` is its transpose), ``dense_0.bias`` ``(units,)``,
  ``batchnorm_1.gamma`` / ``.beta``, ``prelu_2.weight``, ``swish_3.beta``;
- every layer state entry as ``<layer>.<entry>``, as ``model.get_state()`` gives it:
  ``batchnorm_1.running_mean`` / ``.running_var`` / ``.num_batches_tracked``,
  ``standardize_0.mean`` / ``.scale``, ``whiten_0.mean`` / ``.components``;
- metadata ``"gpunn.model"``: JSON ``{"config": model_config(model), "state":
  [state tensor names]}`` (see :mod:`gpunn.persistence.config`), and
  ``"gpunn.format": "model"``.

Layer names are the model's (``dense_0`` for the first layer when unnamed), so the
names are stable across save and load. The optimizer's configuration is saved, not
its state (moments, step count): training checkpoints hold that.
"""

from __future__ import annotations

import json
import os

import numpy as np

from gpunn.errors import CheckpointError
from gpunn.layers.dense import Dense
from gpunn.persistence import _header
from gpunn.persistence.config import layer_from_config, model_config, model_from_config
from gpunn.persistence.safetensors import read_file, write_file

MODEL_KEY = "gpunn.model"
FORMAT_KEY = "gpunn.format"
_TRAINING_KEY = "gpunn.training_state"  # written by training checkpoints
_TRAINING = ("optimizer.", "loop.", "callbacks.")  # their tensors beside the model's
# what rebuilding from a (possibly tampered) configuration may raise
CONFIG_ERRORS = (ValueError, TypeError, LookupError, ArithmeticError)


def save(model, path, include_optimizer: bool = True) -> None:
    """Saves a built model (architecture, weights, layer state, and the loss,
    optimizer and metric configs when compiled) to ``path``, atomically.

    Args:
        model: a built :class:`~gpunn.Sequential`.
        path: the file to write (str or path-like), by convention
            ``*.safetensors``; replaced if it exists.
        include_optimizer: save the compile configuration (loss, optimizer
            hyperparameters, metrics); :func:`load` then returns a compiled model.
            Default: True.

    Raises:
        NotBuiltError: the model is not built.
        ValueError: something :func:`load` could not rebuild (a layer class not in
            :mod:`gpunn.layers`, a loss or an lr given as a plain callable); nothing
            is written.
        OSError: the write failed; an existing file at ``path`` is intact.
    """
    model._require_built()
    config = model_config(model, include_optimizer)
    _check_rebuildable(config)
    params = model.arena.params
    tensors = {
        slot.key: model.backend.to_numpy(model.arena.view(params, slot))
        for slot in model.arena.slots
    }
    state = model.get_state()
    tensors.update(state)
    metadata = {MODEL_KEY: model_json(config, state), FORMAT_KEY: "model"}
    write_file(path, tensors, metadata)


def model_json(config: dict, state: dict) -> str:
    """The ``"gpunn.model"`` metadata: the configuration and the state tensor names."""
    return json.dumps({"config": config, "state": sorted(state)}, allow_nan=False)


def rebuildable_config(model) -> dict | None:
    """``model_config(model)`` when :func:`load` can rebuild it, else None (training
    checkpoints of such models are resumable but not loadable on their own)."""
    try:
        config = model_config(model, True)
        _check_rebuildable(config)
    except ValueError:
        return None
    return config


def _check_rebuildable(config: dict) -> None:
    """Rebuilds the layers, loss, optimizer and metrics, unbuilt, so a file that
    :func:`load` would refuse is never written."""
    try:
        model_from_config({**config, "input_dim": None}, backend="cpu")
    except CONFIG_ERRORS as exc:
        raise ValueError(f"this model cannot be saved: {exc}") from exc


def load(path, backend=None, *, compile: bool = True):
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
    path = os.fspath(path)
    tensors, metadata = read_file(path)
    saved = _saved_json(metadata, path)
    if metadata.get(FORMAT_KEY) == "training":  # a ModelCheckpoint file
        tensors = {k: v for k, v in tensors.items() if not k.startswith(_TRAINING)}
    config = saved["config"]
    if isinstance(config, dict) and not compile:
        config = {**config, "compile": None}
    try:
        _check_widths(config, tensors, path)
        model = model_from_config(config, backend)
    except CheckpointError:
        raise
    except CONFIG_ERRORS as exc:
        raise CheckpointError(f"{path}: invalid model configuration: {exc}") from exc
    if not model.built:
        raise CheckpointError(f"{path}: the model configuration has no input_dim")
    _check_tensors(model, tensors, saved["state"], path)
    _set_tensors(model, tensors, saved["state"], path)
    return model


def _check_widths(config: dict, tensors: dict, path: str) -> None:
    """Refuses, before anything is built, a configuration whose layers would
    allocate far more values than the file holds (a tampered ``input_dim`` or
    ``units``): a Dense kernel ``n_in * units`` must fit in the file's elements, and
    any other width in them plus 2**20."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        return  # model_from_config reports it
    width, budget = config.get("input_dim"), sum(t.size for t in tensors.values())
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        return
    for i, layer in enumerate(config["layers"]):
        layer = layer_from_config(layer)
        out = layer.output_dim(width)
        dense = isinstance(layer, Dense)
        values = width * out if dense else max(width, out)
        if values > (budget if dense else budget + 2**20):
            raise CheckpointError(
                f"{path}: layers[{i}] ({type(layer).__name__}) would allocate "
                f"{values} values, but the file holds only {budget}: the "
                "configuration does not fit the tensors"
            )
        width = out


def _saved_json(metadata: dict, path: str) -> dict:
    if MODEL_KEY not in metadata:
        hint = ""
        if _TRAINING_KEY in metadata:
            hint = (
                " (a training checkpoint of a model load cannot rebuild: resume it "
                "with fit(..., resume_from=path))"
            )
        raise CheckpointError(
            f"{path}: not a gpunn model file: no {MODEL_KEY!r} metadata{hint}"
        )
    try:
        saved = _header.strict_loads(metadata[MODEL_KEY])
    except ValueError as exc:
        raise CheckpointError(
            f"{path}: {MODEL_KEY!r} is not valid JSON: {exc}"
        ) from None
    state = saved.get("state") if isinstance(saved, dict) else None
    if set(saved if isinstance(saved, dict) else ()) != {"config", "state"} or not (
        isinstance(state, list) and all(isinstance(k, str) for k in state)
    ):
        raise CheckpointError(
            f"{path}: {MODEL_KEY!r} must be an object with 'config' and 'state' (a "
            "list of tensor names)"
        )
    return saved


def _check_tensors(model, tensors: dict, state: list, path: str) -> None:
    """CheckpointError listing missing, unexpected and mismatched tensors."""
    expected = {s.key: s.shape for s in model.arena.slots}
    names = {layer.name for layer in model.layers}
    owned = {k for k in state if k.split(".", 1)[0] in names} - set(expected)
    missing = sorted((set(expected) | owned) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected) - owned)
    mismatched = [
        f"{key}: file {tensors[key].dtype} {tensors[key].shape}, "
        f"model {model.dtype} {shape}"
        for key, shape in expected.items()
        if key in tensors
        and (tensors[key].dtype != model.dtype or tensors[key].shape != shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{path}: the tensors do not fit the saved architecture: missing "
            f"{missing}, unexpected {unexpected}, mismatched {mismatched}"
        )
    for key in expected:
        if not np.isfinite(tensors[key]).all():
            raise CheckpointError(f"{path}: weights {key} contain NaN or infinity")


def _set_tensors(model, tensors: dict, state: list, path: str) -> None:
    model.set_weights([tensors[s.key] for s in model.arena.slots])
    for layer in model.layers:
        prefix = layer.name + "."
        part = {k[len(prefix) :]: tensors[k] for k in state if k.startswith(prefix)}
        try:
            layer.set_state(part)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(
                f"{path}: state of layer {layer.name}: {exc}"
            ) from exc
