"""gpunn: multi-layer perceptrons trained fast on NVIDIA GPUs through CuPy, with the
same layer and optimizer code on NumPy when there is no GPU.

``import gpunn`` never imports CuPy or touches a GPU; the backend is chosen when a model
is built (see :func:`gpunn.backends.get_backend`).
"""

from gpunn import datasets, initializers, layers, losses, optim
from gpunn.backends import get_backend
from gpunn.errors import (
    BackendUnavailableError,
    InvalidInputError,
    LabelError,
    NonFiniteError,
)
from gpunn.gradcheck import GradcheckError, gradcheck
from gpunn.layers import Activation, Dense, Identity, ReLU, Sigmoid, Softmax, Tanh
from gpunn.model import Sequential
from gpunn.training import History

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "BackendUnavailableError",
    "Dense",
    "GradcheckError",
    "History",
    "Identity",
    "InvalidInputError",
    "LabelError",
    "NonFiniteError",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "datasets",
    "get_backend",
    "gradcheck",
    "initializers",
    "layers",
    "losses",
    "optim",
]
