"""Layers: ``Dense`` and the activation layers."""

from gpunn.layers.activations import (
    Activation,
    Identity,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    activation_names,
)
from gpunn.layers.base import Layer
from gpunn.layers.dense import Dense

__all__ = [
    "Activation",
    "Dense",
    "Identity",
    "Layer",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "activation_names",
]
