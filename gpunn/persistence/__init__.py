"""Saving and loading as plain data: safetensors files written atomically and read
safely. Nothing here imports the model or the callbacks: the model hands these
modules its state and rebuilds itself from what they return.

- :mod:`gpunn.persistence.safetensors`: ``write_file`` / ``read_file`` /
  ``clean_stale_temps``, the file layer (no pickle anywhere).
- :mod:`gpunn.persistence.model_io`: model files (``model.save(path)``, read back by
  ``gpunn.load``), with the architecture as JSON inside the file.
- :mod:`gpunn.persistence.config`: ``model_config(model)``, the architecture as a
  dict, and ``model_arguments(config)``, what ``Sequential.from_config`` builds.
- :mod:`gpunn.persistence.training_state`: training checkpoints as tensors and
  JSON (``ModelCheckpoint``, ``fit(resume_from=...)``).
"""

from gpunn.persistence.config import model_arguments, model_config
from gpunn.persistence.safetensors import clean_stale_temps, read_file, write_file

__all__ = [
    "clean_stale_temps",
    "model_arguments",
    "model_config",
    "read_file",
    "write_file",
]
