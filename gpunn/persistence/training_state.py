"""The training-state file: what ``ModelCheckpoint`` writes and ``fit(resume_from=...)``
reads back, as plain data (tensors and JSON). It knows nothing of models or
callbacks: :mod:`gpunn.run_state` captures a model's state into this form and
restores it from what :func:`read` returns.

Tensors, by documented names:

- ``<layer>.<param>`` (``dense_0.kernel``, shaped as ``get_weights``) and
  ``<layer>.<state>`` (``batchnorm_1.running_mean``): parameters and layer state, the
  names ``model.save`` uses;
- ``optimizer.<buffer>`` (``optimizer.exp_avg``): the optimizer's flat state over the
  arena layout, and ``optimizer.grad_norm`` once clipping has measured it;
- ``loop.*``: the running totals of a partly done epoch (see
  :class:`gpunn.checkpointing.FitLoop`);
- ``callbacks.<n>.*``: arrays inside a callback's state (EarlyStopping's best
  weights).

Metadata ``"gpunn.format"`` is ``"training"``; the JSON under
``"gpunn.training_state"`` holds the dtype, the layer and loss configs, the
optimizer's class, hyperparameters (the lr as a constant or a schedule config) and
host state (step counter, ``lr_scale``), the generator states of the model and of its
dropout/noise layers (dropout's counter-based generator on every backend;
GaussianNoise's is ``null`` on the GPU, where CuPy does not expose cuRAND's state, so
a resumed GPU run draws other noise), each callback's state and the loop position.
"""

from __future__ import annotations

import json
import os

import numpy as np

from gpunn.errors import CheckpointError
from gpunn.persistence import _header, safetensors, state_schema

STATE_KEY = "gpunn.training_state"
FORMAT_KEY = "gpunn.format"  # "training" here, "model" in model.save files
MODEL_KEY = "gpunn.model"  # the model's config, when gpunn.load can rebuild it
RUN_KEY = "gpunn.run"  # the id of the checkpoint callback's run that wrote the file
VERSION = 2  # 2: callbacks keyed by state_key, a strict schema, no stop_training
TENSOR = "__tensor__"  # a JSON placeholder for an array saved as a tensor


def write(
    path, tensors: dict, state: dict, model_json: str | None = None, run=None
) -> None:
    """Writes a training state atomically to ``path`` (a safetensors file).

    Args:
        path: the file (str or path-like).
        tensors: ``{name: host array}`` (see the module doc for the names).
        state: the JSON-able training state (arrays already moved into
            ``tensors`` with :func:`split`).
        model_json: the ``"gpunn.model"`` entry that lets ``gpunn.load`` open the
            file as a model, or None.
        run: the writer's run id, stored as ``"gpunn.run"`` (a checkpoint callback
            deletes only files that carry its own, see :func:`written_by`), or None.
    """
    tensors = {k: np.asarray(v, order="C") for k, v in tensors.items()}
    metadata = {STATE_KEY: json.dumps(state, allow_nan=True), FORMAT_KEY: "training"}
    if model_json is not None:
        metadata[MODEL_KEY] = model_json
    if run is not None:
        metadata[RUN_KEY] = run
    safetensors.write_file(os.fspath(path), tensors, metadata)


def written_by(path, run: str) -> bool:
    """Whether the file at ``path`` is a training checkpoint written with ``run``
    (read from its header alone; False for a missing, foreign or corrupt file)."""
    try:
        metadata = safetensors.read_metadata(path)
    except (OSError, CheckpointError):
        return False
    return metadata.get(FORMAT_KEY) == "training" and metadata.get(RUN_KEY) == run


def read(path) -> tuple[dict, dict]:
    """``(tensors, state)`` of a training checkpoint: the file checked by the file
    layer, the state parsed from its JSON strictly (no duplicate keys, bounded
    nesting; ``Infinity`` allowed, a monitor's best starts there) and validated
    field by field (:mod:`gpunn.persistence.state_schema`). CheckpointError naming
    ``path`` when the file is not a training checkpoint or its state does not fit."""
    path = os.fspath(path)
    tensors, metadata = safetensors.read_file(path)
    if STATE_KEY not in metadata:
        raise CheckpointError(
            f"{path} is not a training checkpoint: no {STATE_KEY!r} metadata (a "
            "model file from model.save? load it with gpunn.load)"
        )
    try:
        state = _header.strict_loads(metadata[STATE_KEY], constants=True)
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable training state: {exc}") from None
    version = state.get("version") if isinstance(state, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version < VERSION:
        raise CheckpointError(
            f"{path}: written by an older gpunn (training state version {version}); "
            f"this one resumes version {VERSION}. gpunn.load(path) still reads its "
            "model and weights"
        )
    return tensors, state_schema.checked(state, VERSION, path)


def split(value, name: str, tensors: dict):
    """``value`` with every NumPy array moved into ``tensors`` under a dotted name
    (``name.<key>``), replaced by ``{"__tensor__": name}``."""
    if isinstance(value, np.ndarray):
        tensors[name] = value
        return {TENSOR: name}
    if isinstance(value, dict):
        return {str(k): split(v, f"{name}.{k}", tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [split(v, f"{name}.{i}", tensors) for i, v in enumerate(value)]
    return value.item() if isinstance(value, np.generic) else value


def join(value, tensors: dict):
    """Inverse of :func:`split`; KeyError for a missing tensor."""
    if isinstance(value, dict):
        if set(value) == {TENSOR}:
            return tensors[value[TENSOR]]
        return {k: join(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [join(v, tensors) for v in value]
    return value
