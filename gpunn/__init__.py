"""gpunn: multi-layer perceptrons trained fast on NVIDIA GPUs through CuPy, with the
same layer and optimizer code on NumPy when there is no GPU.

``import gpunn`` never imports CuPy or touches a GPU; the backend is chosen when a model
is built (see :func:`gpunn.backends.get_backend`).
"""

from gpunn import (
    callbacks,
    checkpointing,
    data,
    datasets,
    faults,
    initializers,
    layers,
    losses,
    metrics,
    optim,
    persistence,
    precision,
    regularizers,
    schedules,
    tune,
)
from gpunn.backends import get_backend
from gpunn.callbacks import History
from gpunn.checkpointing import ModelCheckpoint
from gpunn.errors import (
    ArgumentError,
    ArgumentTypeError,
    BackendUnavailableError,
    CheckpointError,
    CorruptFileError,
    DeviceMemoryError,
    GpunnError,
    InvalidInputError,
    LabelError,
    NonFiniteError,
    UnsafeFileError,
)
from gpunn.gradcheck import GradcheckError, gradcheck
from gpunn.layers import (
    ELU,
    GELU,
    Activation,
    BatchNorm,
    Dense,
    Dropout,
    GaussianNoise,
    Identity,
    LeakyReLU,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Standardize,
    Swish,
    Tanh,
    Whiten,
)
from gpunn.loading import load
from gpunn.model import Sequential

__version__ = "0.1.0"

__all__ = [
    "ELU",
    "GELU",
    "Activation",
    "ArgumentError",
    "ArgumentTypeError",
    "BackendUnavailableError",
    "BatchNorm",
    "CheckpointError",
    "CorruptFileError",
    "Dense",
    "DeviceMemoryError",
    "Dropout",
    "GaussianNoise",
    "GpunnError",
    "GradcheckError",
    "History",
    "Identity",
    "InvalidInputError",
    "LabelError",
    "LeakyReLU",
    "ModelCheckpoint",
    "NonFiniteError",
    "PReLU",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Standardize",
    "Swish",
    "Tanh",
    "UnsafeFileError",
    "Whiten",
    "callbacks",
    "checkpointing",
    "data",
    "datasets",
    "faults",
    "get_backend",
    "gradcheck",
    "initializers",
    "layers",
    "load",
    "losses",
    "metrics",
    "optim",
    "persistence",
    "precision",
    "regularizers",
    "schedules",
    "tune",
]
