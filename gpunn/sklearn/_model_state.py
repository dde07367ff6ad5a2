"""A fitted gpunn model as bytes and back, through ``model.save`` and
``gpunn.load`` (a safetensors file: weights, layer state, architecture and compile
settings; nothing is unpickled), so wrapped models survive ``pickle``/``joblib``
of the estimator that holds them."""

from __future__ import annotations

import os
import tempfile

MODEL_FILE = "model.safetensors"


def to_bytes(model) -> bytes:
    """The bytes of ``model.save``'s file for ``model``."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, MODEL_FILE)
        model.save(path)
        with open(path, "rb") as file:
            return file.read()


def from_bytes(data: bytes, backend=None):
    """The model :func:`to_bytes` gave the bytes of, on ``backend``."""
    from gpunn.loading import load

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, MODEL_FILE)
        with open(path, "wb") as file:
            file.write(data)
        return load(path, backend)
