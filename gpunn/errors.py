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


class ArgumentError(GpunnError, ValueError):
    """An argument of the public API has a value out of its range: a hyperparameter
    (``lr=-1``), a setting (``batch_size=0``), an option of ``fit``. The message
    names the argument, the expected range and the value got."""


class ArgumentTypeError(GpunnError, TypeError):
    """An argument of the public API, or an array given to it, has the wrong type
    (``epochs="2"``, ``shuffle="no"``, a string array for ``X``). The message names
    the argument, the expected type and the type got."""


class LabelError(InvalidInputError):
    """Class labels out of ``[0, n_classes)``, fractional, or not finite."""


class NonFiniteError(GpunnError, FloatingPointError):
    """A loss or gradient became NaN or infinite during training."""


class DeviceMemoryError(GpunnError, MemoryError):
    """The device ran out of memory inside a training step, ``evaluate`` or
    ``predict``. The message keeps the backend's numbers and names the layer, the
    phase and the batch size, with a hint (a smaller ``batch_size``). The original
    error is its ``__cause__``."""


class BackendUnavailableError(GpunnError, RuntimeError):
    """The requested backend cannot run on this machine (e.g. ``backend="gpu"`` with no
    CuPy or no usable GPU). The message says how to fix it."""


class NotBuiltError(GpunnError, RuntimeError):
    """A model or layer was used before its input size was known."""


class CheckpointError(GpunnError, ValueError):
    """A saved model or checkpoint is missing, corrupt, unsafe or does not match."""


class CorruptFileError(CheckpointError):
    """A saved file does not match its own structure or checksum: truncated, extended
    (trailing bytes), bit-flipped (SHA-256 mismatch) or with an unreadable header. The
    message names the path and what is wrong."""


class UnsafeFileError(CheckpointError):
    """A file breaks a rule of the safe loader before anything large is allocated: not
    a safetensors file (e.g. a pickle or ``torch.save`` zip), a header or tensor count
    over the limits, a dtype outside the allow-list, overlapping or out-of-range
    offsets, a shape whose size overflows, duplicate JSON keys or non-finite JSON
    numbers. The message names the path and what is wrong."""
