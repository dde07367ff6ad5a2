"""Saving and loading: safetensors files written atomically and read safely.

- :mod:`gpunn.persistence.safetensors`: ``write_file`` / ``read_file`` /
  ``clean_stale_temps``, the file layer (no pickle anywhere).
- :mod:`gpunn.persistence.model_io`: whole models, ``model.save(path)`` and
  :func:`load`, with the architecture as JSON inside the file.
- :mod:`gpunn.persistence.config`: ``model_config(model)`` /
  ``model_from_config(config, backend)``, the architecture as a dict.
"""

from gpunn.persistence.config import model_config, model_from_config
from gpunn.persistence.model_io import load, save
from gpunn.persistence.safetensors import clean_stale_temps, read_file, write_file

__all__ = [
    "clean_stale_temps",
    "load",
    "model_config",
    "model_from_config",
    "read_file",
    "save",
    "write_file",
]
