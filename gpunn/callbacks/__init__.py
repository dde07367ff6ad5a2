"""Callbacks for ``fit``, with Keras' names, arguments and hooks.

A callback sees the model (``self.model``) and is called at the start and end of
training, of each epoch and of each batch. Epoch ``logs`` are host floats
(``{"loss": ..., "accuracy": ..., "val_loss": ...}``); batch ``logs`` hold the batch's
``"size"`` and its ``"loss"`` as a 0-d device array; ``on_train_begin`` gets
``{"log_names": [...]}``, the epoch log names ``fit`` will produce, so a callback that reads it
(``float(logs["loss"])``) waits for the device and one that does not costs nothing.
Setting ``model.stop_training = True`` ends ``fit`` after the current batch. Before
any of that, ``fit`` calls ``check_arguments(logs)`` on every callback, with the same
logs as ``on_train_begin``, so arguments that cannot work fail before anything
changes.
"""

from gpunn.callbacks.base import Callback, CallbackList, History, monitor_mode
from gpunn.callbacks.checkpoint import ModelCheckpoint
from gpunn.callbacks.loggers import CSVLogger, JSONLinesLogger
from gpunn.callbacks.monitors import (
    EarlyStopping,
    LearningRateScheduler,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "JSONLinesLogger",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
    "monitor_mode",
]
