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

This module reads and writes plain data (a config dict and named arrays); the model
hands it its state (``Sequential.save``) and rebuilds itself from what :func:`read`
returns (``gpunn.load``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from gpunn.errors import CheckpointError
from gpunn.layers.dense import Dense
from gpunn.persistence import _header
from gpunn.persistence.config import layer_from_config, model_arguments
from gpunn.persistence.safetensors import read_file, write_file
from gpunn.persistence.training_state import FORMAT_KEY, MODEL_KEY
from gpunn.persistence.training_state import STATE_KEY as _TRAINING_KEY

_TRAINING = ("optimizer.", "loop.", "callbacks.")  # their tensors beside the model's
# what rebuilding from a (possibly tampered) configuration may raise
CONFIG_ERRORS = (ValueError, TypeError, LookupError, ArithmeticError)


def write(path, config: dict, weights: dict, state: dict) -> None:
    """Writes a model file atomically (see the module doc); what ``model.save``
    calls. Every file it writes, :func:`read` and ``gpunn.load`` load: what they
    would refuse is refused first, with their message, and nothing is written.

    Args:
        path: the file to write (str or path-like), by convention
            ``*.safetensors``; replaced if it exists.
        config: the model's configuration (:func:`~gpunn.persistence.config.
            model_config`).
        weights: ``{"<layer>.<parameter>": host array}``, in layer order.
        state: ``{"<layer>.<entry>": host array}``, the layers' state.

    Raises:
        ValueError: something load would refuse: a layer class not in
            :mod:`gpunn.layers`, a loss or an lr given as a plain callable, NaN or
            infinite weights, layer state its layer would refuse (NaN running
            statistics), a layer far wider than the file's tensors; nothing is
            written.
        OSError: the write failed; an existing file at ``path`` is intact.
    """
    try:
        check_loadable(config, weights, state, os.fspath(path))
    except CheckpointError as exc:  # load's message; for a save, a ValueError
        raise ValueError(str(exc)) from None
    metadata = {MODEL_KEY: model_json(config, state), FORMAT_KEY: "model"}
    write_file(path, {**weights, **state}, metadata)


def model_json(config: dict, state: dict) -> str:
    """The ``"gpunn.model"`` metadata: the configuration and the state tensor names."""
    return json.dumps({"config": config, "state": sorted(state)}, allow_nan=False)


def loadable_json(config: dict, weights: dict, state: dict) -> str | None:
    """:func:`model_json` when ``gpunn.load`` could rebuild a model from these
    (what a training checkpoint stores beside its state), else None."""
    try:
        check_loadable(config, weights, state, "")
    except ValueError:
        return None
    return model_json(config, state)


def check_loadable(config: dict, weights: dict, state: dict, path: str) -> None:
    """Runs on what is about to be written the checks load runs on a file:
    ValueError when the configuration cannot be rebuilt, CheckpointError with
    load's message for a width, a weight or a layer state it would refuse."""
    layers = _rebuilt_layers(config)
    _check_widths(config, {**weights, **state}, path)
    check_finite(weights, path)
    set_layer_states(layers, state, sorted(state), path)


def _rebuilt_layers(config: dict) -> list:
    """Rebuilds the layers, loss, optimizer and metrics, unbuilt: ValueError when
    load could not."""
    try:
        return model_arguments({**config, "input_dim": None})["layers"]
    except CONFIG_ERRORS as exc:
        raise ValueError(f"this model cannot be saved: {exc}") from exc


def set_layer_states(layers, tensors: dict, state: list, path: str) -> None:
    """Gives each layer its ``<name>.<entry>`` tensors of the ``state`` names;
    CheckpointError naming the path and the layer when one refuses them."""
    for layer in layers:
        prefix = layer.name + "."
        part = {k[len(prefix) :]: tensors[k] for k in state if k.startswith(prefix)}
        try:
            layer.set_state(part)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(
                f"{path}: state of layer {layer.name}: {exc}"
            ) from exc


def check_finite(weights: dict, path: str) -> None:
    """CheckpointError naming the first weight array with a NaN or infinity."""
    for key, array in weights.items():
        if not np.isfinite(array).all():
            raise CheckpointError(f"{path}: weights {key} contain NaN or infinity")


def read(path, compile: bool = True) -> tuple[dict, dict, list]:
    """``(config, tensors, state names)`` of a model file (or of a training
    checkpoint that holds a model config, its training tensors left out), checked
    as untrusted input before the model is built: the file layer's checks, the
    ``"gpunn.model"`` JSON, and layer widths that fit the tensors in the file.

    Args:
        path: the file (str or path-like).
        compile: keep the compile configuration (else it is set to None).

    Raises:
        CheckpointError: the file is corrupt or unsafe, not a model file, or its
            configuration cannot fit its tensors. Every message names the path.
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
    except CheckpointError:
        raise
    except CONFIG_ERRORS as exc:
        raise CheckpointError(f"{path}: invalid model configuration: {exc}") from exc
    return config, tensors, saved["state"]


def _check_widths(config: dict, tensors: dict, path: str) -> None:
    """Refuses, before anything is built, a configuration whose layers would
    allocate far more values than the file holds (a tampered ``input_dim`` or
    ``units``): a Dense kernel ``n_in * units`` must fit in the file's elements, and
    any other width in them plus 2**20."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        return  # Sequential.from_config reports it
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


def check_tensors(slots, dtype, tensors: dict, state: list, layers, path) -> None:
    """CheckpointError listing missing, unexpected and mismatched tensors between a
    file and the model rebuilt from it (``slots``: its arena's parameter slots,
    ``layers``: its layer names), then refusing non-finite weights."""
    expected = {s.key: s.shape for s in slots}
    names = set(layers)
    owned = {k for k in state if k.split(".", 1)[0] in names} - set(expected)
    missing = sorted((set(expected) | owned) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected) - owned)
    mismatched = [
        f"{key}: file {tensors[key].dtype} {tensors[key].shape}, model {dtype} {shape}"
        for key, shape in expected.items()
        if key in tensors
        and (tensors[key].dtype != dtype or tensors[key].shape != shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{path}: the tensors do not fit the saved architecture: missing "
            f"{missing}, unexpected {unexpected}, mismatched {mismatched}"
        )
    check_finite({key: tensors[key] for key in expected}, path)
