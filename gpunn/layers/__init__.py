"""Layers: ``Dense``, activations (fixed and parametric), regularization (Dropout,
GaussianNoise), normalization (BatchNorm) and preprocessing (Standardize, Whiten)."""

from gpunn.layers.activations import (
    ELU,
    GELU,
    Activation,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    activation_names,
)
from gpunn.layers.base import Layer
from gpunn.layers.dense import Dense
from gpunn.layers.noise import Dropout, GaussianNoise
from gpunn.layers.normalization import BatchNorm
from gpunn.layers.parametric import PReLU, Swish
from gpunn.layers.preprocessing import Standardize, Whiten

__all__ = [
    "ELU",
    "GELU",
    "Activation",
    "BatchNorm",
    "Dense",
    "Dropout",
    "GaussianNoise",
    "Identity",
    "Layer",
    "LeakyReLU",
    "PReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Standardize",
    "Swish",
    "Tanh",
    "Whiten",
    "activation_names",
]
