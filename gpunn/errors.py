"""Exceptions raised by gpunn.

Each subclasses a builtin so callers can catch either the gpunn class or the builtin one
(``except ValueError`` still catches :class:`InvalidInputError`). Messages name the
argument, what was expected and what was got.
"""


class GpunnError(Exception):
    """Base class of every gpunn exception."""


class InvalidInputError(GpunnError, ValueError):
    """Data given to ``fit``/``evaluate``/``predict``/``train_step`` has the wrong shape,
    size or values (e.g. ``X`` not 2-D, ``len(X) != len(y)``, NaN in ``X``)."""


class LabelError(InvalidInputError):
    """Class labels out of ``[0, n_classes)``, fractional, or not finite."""


class NonFiniteError(GpunnError, FloatingPointError):
    """A loss or gradient became NaN or infinite during training."""


class BackendUnavailableError(GpunnError, RuntimeError):
    """The requested backend cannot run on this machine (e.g. ``backend="gpu"`` with no
    CuPy or no usable GPU). The message says how to fix it."""


class NotBuiltError(GpunnError, RuntimeError):
    """A model or layer was used before its input size was known."""


class CheckpointError(GpunnError, ValueError):
    """A saved model or checkpoint is missing, corrupt, unsafe or does not match."""
